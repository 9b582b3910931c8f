"""How an option is declared: once, on the Config field it sets (httpie's cli/definition.py idea).

A field made with `option(...)` (`switch(...)` for a bool flag) carries its flags, help line,
--help group, bounds and parser; fetcher.cli turns each into a click option, its config-file key
and its AFETCH_* variable (the long flag name), and Config.from_options builds the frozen Config
from the flat values. The field's own default is the option's default: it is written nowhere
else. No click here, so the library's Config never imports the command line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

GROUPS = ("Input", "Request", "Concurrency", "Output")  # --help sections, in this order
PathKind = Literal["list", "file", "output"]  # -l FILE (or -), an existing file, a file to write


class ConfigError(ValueError):
    """A bad option value or configuration file; reported as a usage error (exit 2)."""


@dataclass(frozen=True, slots=True)
class Spec:
    """One command-line option of a field. A `flag` is off by default and, given, sets the
    field to `sets`; any other option's value is the field's (through `parse` for text)."""

    flags: tuple[str, ...]
    help: str
    group: str
    flag: bool = False
    sets: Any = True
    choices: tuple[str, ...] = ()
    case_sensitive: bool = True
    minimum: float | None = None  # the least value allowed (an integer field: whole numbers)
    above: bool = False  # the value must be more than `minimum`, not equal to it
    parse: Callable[[str], Any] | None = None  # text -> value; raises ConfigError
    multiple: bool = False  # repeatable: the field is a tuple of `parse`d values
    env_splitter: str | None = None  # how one AFETCH_* value splits into items (default: space)
    path: PathKind | None = None
    metavar: str | None = None
    empty: str = ""  # if set, the error for a value that names nothing, typed or in AFETCH_*
    shown_default: str | None = None  # --help's [default: ...] when the value says it badly
    configurable: bool = True  # a config-file key and an AFETCH_* variable

    @property
    def key(self) -> str:
        """The long flag name: the config-file key (``user-agent``)."""
        return next(flag[2:] for flag in self.flags if flag.startswith("--"))

    @property
    def name(self) -> str:
        """The click parameter name: ``http1.0`` -> ``http1_0``."""
        return self.key.replace("-", "_").replace(".", "_")

    def check(self, value: Any) -> str | None:
        """What is wrong with `value` by this option's bounds and choices, or None. None is an
        option not given, where its field allows that (--cacert, --scheme)."""
        if value is None:
            return None
        if self.minimum is not None and not (
            value > self.minimum if self.above else value >= self.minimum
        ):
            least = f"more than {self.minimum:g}" if self.above else f"at least {self.minimum:g}"
            return f"{self.key} must be {least}, got {value}"
        if self.choices and value not in self.choices:
            return f"{self.key} must be one of {', '.join(self.choices)}, got {value!r}"
        return None


def option(default: Any, *flags: str, also: tuple[Spec, ...] = (), **spec: Any) -> Any:
    """A dataclass field with `default` (a list or tuple default is copied per instance) that
    the command line sets through `flags`; `also` adds options that set it too (``--json``)."""
    specs = ((Spec(flags, **spec),) if flags else ()) + also
    metadata = {"options": specs}
    if isinstance(default, (list, dict, set)) or (
        dataclasses.is_dataclass(default) and not isinstance(default, type)
    ):
        return dataclasses.field(default_factory=lambda: default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def switch(*flags: str, sets: bool = True, **spec: Any) -> Any:
    """A bool field that a flag (no value) turns to `sets`, the other way by default: off until
    given (``--stats``), or with ``sets=False`` on until given (``-k/--insecure``)."""
    return option(not sets, *flags, flag=True, sets=sets, **spec)


def specs_of(field: dataclasses.Field[Any]) -> tuple[Spec, ...]:
    """The options a field is declared with (none for a field the command line cannot set)."""
    specs: tuple[Spec, ...] = field.metadata.get("options", ())
    return specs


def check_fields(instance: Any) -> str | None:
    """The first bound or choice a dataclass instance's option fields break, or None."""
    for field in dataclasses.fields(instance):
        for spec in specs_of(field):
            if spec.flag or spec.multiple:
                continue
            problem = spec.check(getattr(instance, field.name))
            if problem:
                return problem
    return None
