"""The afetch command: the options declared on the Config fields -> Config -> runner -> exit code.

Parsing the command line, config file and AFETCH_* variables is all it does; what a run opens,
reads and writes is the runner's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from .config import (
    Config,
    ConfigError,
    ConfigKey,
    Fanout,
    Run,
    TomlType,
    declared,
    default_of,
    load_toml_defaults,
    nearest,
)
from .options import GROUPS, Spec
from .status import ExitCode
from .version import __version__

ENV_PREFIX = "AFETCH"
# Every option: the dataclass it builds, its field path there, its declaration; --help order.
DECLARED: list[tuple[type[Any], str, Spec]] = [
    *((Config, path, spec) for path, spec in declared(Config)),
    *((Run, path, spec) for path, spec in declared(Run)),
    *((Fanout, path, spec) for path, spec in declared(Fanout)),
]
# Parameter names a config file or AFETCH_* variable may set.
CONFIGURABLE = frozenset(spec.name for _, _, spec in DECLARED if spec.configurable)
# --help shows the options in these groups, in this order; anything else goes last.
HELP_GROUPS = {
    group: tuple(spec.name for _, _, spec in DECLARED if spec.group == group) for group in GROUPS
}


class Command(click.Command):
    """A click command whose expected errors end in one line on stderr and exit 2, and whose
    options are grouped in --help."""

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        extra["standalone_mode"] = False
        try:
            return super().main(args, prog_name, **extra)
        except click.exceptions.Abort:
            sys.exit(ExitCode.INTERRUPTED)
        except click.BadParameter as exc:
            click.echo(f"afetch: error: {_where(exc)}{exc.format_message()}", err=True)
            sys.exit(ExitCode.USAGE)
        except click.ClickException as exc:
            click.echo(f"afetch: error: {exc.format_message()}", err=True)
            sys.exit(ExitCode.USAGE)
        except Exception as exc:  # a bug: one line for the user, the traceback on request
            if os.environ.get("AFETCH_DEBUG"):
                raise
            click.echo(f"afetch: internal error: {type(exc).__name__}: {exc}", err=True)
            sys.exit(ExitCode.INTERNAL)

    def invoke(self, ctx: click.Context) -> Any:
        _warn_unknown_variables(self)
        _refuse_conflicts(ctx)
        return super().invoke(ctx)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Options in HELP_GROUPS sections, each one line: flags, help, default."""
        options = {p.name: p for p in self.get_params(ctx) if isinstance(p, click.Option)}
        placed = {name for names in HELP_GROUPS.values() for name in names}
        groups = {title: list(names) for title, names in HELP_GROUPS.items()}
        groups["Other"] = [name for name in options if name not in placed]
        for title, names in groups.items():
            rows = [_help_row(ctx, options[name]) for name in names if name in options]
            with formatter.section(f"{title} options"):
                formatter.write_dl(rows, col_max=32)
        # The defaults were written with no-break spaces, so wrapping never splits one.
        formatter.buffer[:] = [
            text.replace(NO_BREAK, " ").replace(NO_BREAK_HYPHEN, "-") for text in formatter.buffer
        ]


def _help_row(ctx: click.Context, option: click.Option) -> tuple[str, str]:
    """click's own row, without the range notes ("x>=0") and parentheses that crowd it; the
    aliases users bring from curl (-m, --max-time) named in the help, not the flag column."""
    record = option.get_help_record(ctx)
    assert record is not None  # no hidden options here
    default = option.get_help_extra(ctx).get("default")
    if isinstance(option.show_default, str):
        default = option.show_default
    help_text = option.help or ""
    short = [opt for opt in option.opts if not opt.startswith("--")][:1]
    primary = short + [opt for opt in option.opts if opt.startswith("--")][:1]
    aliases = [opt for opt in option.opts if opt not in primary]
    flags = record[0]
    if aliases:
        metavar = flags[len(click.formatting.join_options(option.opts)[0]) :]
        flags = click.formatting.join_options(primary)[0] + metavar
        help_text += f" Also {', '.join(aliases)}.".replace("-", NO_BREAK_HYPHEN)
    if not default:
        return flags, help_text
    return flags, f"{help_text}  " + f"[default: {default}]".replace(" ", NO_BREAK)


NO_BREAK = "\u00a0"  # a space the help's line wrapping does not break at
NO_BREAK_HYPHEN = "\u2011"  # and a hyphen (an alias is not split at --max-|time)
# AFETCH_* variables that name no option but are read all the same.
OTHER_VARIABLES = (f"{ENV_PREFIX}_CONFIG", f"{ENV_PREFIX}_DEBUG")


def _warn_unknown_variables(command: click.Command) -> None:
    """One warning line per AFETCH_* variable that names no option: a typo is otherwise
    silently ignored, and the run does not do what the user set up."""
    known = [*(env_name(key) for key in config_options(command)), *OTHER_VARIABLES]
    for name in sorted(os.environ):
        if name.startswith(f"{ENV_PREFIX}_") and name not in known:
            # Compared without the prefix, which every name shares and which would make any
            # two look alike.
            cut = len(ENV_PREFIX) + 1
            near = nearest(name[cut:], [variable[cut:] for variable in known])
            hint = f"; did you mean {ENV_PREFIX}_{near}?" if near else ""
            click.echo(f"afetch: warning: {name}: no such option{hint}", err=True)


def env_name(key: str) -> str:
    """The environment variable for a long option name: user-agent -> AFETCH_USER_AGENT."""
    return f"{ENV_PREFIX}_{key.upper().replace('-', '_').replace('.', '_')}"


def _where(exc: click.BadParameter) -> str:
    """Name where a bad value came from when it was not the command line."""
    param, ctx = exc.param, exc.ctx
    if param is None or ctx is None or param.name is None:
        return ""
    source = ctx.get_parameter_source(param.name)
    key = next((k for k, p in config_options(ctx.command).items() if p is param), None)
    if key is None:
        return ""
    if source is ParameterSource.ENVIRONMENT:
        return f"{env_name(key)}: "
    if source is ParameterSource.DEFAULT_MAP:
        return f"{ctx.meta.get(CONFIG_PATH, 'config file')}: key {key!r}: "
    return ""


CONFIG_PATH = "afetch.config_path"


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "afetch" / "config.toml"


def _load_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Eager: read option defaults from --config FILE, else the user's config file if any."""
    path = Path(value) if value else user_config_path()
    if value or path.is_file():
        try:
            defaults = load_toml_defaults(path, config_schema(ctx.command))
        except ConfigError as exc:
            raise click.UsageError(str(exc), ctx) from None
        ctx.default_map = {**(ctx.default_map or {}), **defaults}
        ctx.meta[CONFIG_PATH] = str(path)
    return value


def config_options(command: click.Command) -> dict[str, click.Option]:
    """Long option name -> option, for every option a config file or variable may set."""
    options = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.name in CONFIGURABLE:
            # The first long flag is the key: an alias (--max-time) is for the command line.
            key = next(opt[2:] for opt in param.opts if opt.startswith("--"))
            options[key] = param
    return options


def config_keys(command: click.Command) -> dict[str, str]:
    """Long option name -> parameter name, for every option a config file may set."""
    return {key: param.name for key, param in config_options(command).items() if param.name}


def config_schema(command: click.Command) -> dict[str, ConfigKey]:
    """Long option name -> the parameter it sets and the TOML type of its value, read from the
    option's own declaration: a flag is a boolean, an IntRange an integer, a FloatRange a
    number (integer or float), one with a parser of its own a string or an integer, anything
    else a string; a repeatable option takes a list."""
    return {
        key: ConfigKey(param.name, _toml_type(param), repeated=param.multiple)
        for key, param in config_options(command).items()
        if param.name
    }


def _toml_type(option: click.Option) -> TomlType:
    if option.is_flag or isinstance(option.type, click.types.BoolParamType):
        return "boolean"
    if isinstance(option.type, click.types.IntParamType):
        return "integer"
    if isinstance(option.type, click.types.FloatParamType):
        return "number"
    if isinstance(option.type, Parsed):  # its parser reads `workers = 4` as it reads "4"
        return "text"
    return "string"


class Parsed(click.ParamType):  # type: ignore[type-arg]
    """Text through an option's parser (config.py's); its ConfigError names the option."""

    def __init__(self, spec: Spec) -> None:
        assert spec.parse is not None
        self.parse = spec.parse
        self.name = spec.metavar or "TEXT"
        self.splitter = spec.env_splitter

    def split_envvar_value(self, rv: str) -> Sequence[str]:
        """One AFETCH_* value as items: split at the declared separator, else at white space."""
        return (rv or "").split(self.splitter)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):  # already converted (a default, a second pass)
            return value
        try:
            return self.parse(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


_PATHS = {
    "list": click.Path(exists=True, dir_okay=False, allow_dash=True),
    "file": click.Path(exists=True, dir_okay=False),
    "output": click.Path(dir_okay=False, writable=True),
}


def _click_type(spec: Spec, default: Any) -> click.ParamType | None:  # type: ignore[type-arg]
    """The click type that parses an option's text and checks its declared bounds, so an error
    names the flag and where the value came from (the dataclass checks them again)."""
    if spec.parse is not None:
        return Parsed(spec)
    if spec.path is not None:
        return _PATHS[spec.path]
    if spec.choices:
        return click.Choice(spec.choices, case_sensitive=spec.case_sensitive)
    if spec.minimum is not None and isinstance(default, int):
        return click.IntRange(min=int(spec.minimum))
    if spec.minimum is not None:
        return click.FloatRange(min=spec.minimum, min_open=spec.above)
    return None


def _click_option(cls: type[Any], path: str, spec: Spec) -> Callable[[Any], Any]:
    """The click option for one declaration: its default is the field's, and a configurable
    one reads AFETCH_<NAME> (the long option name in capitals, '-' and '.' as '_')."""
    default = default_of(cls, path)
    if spec.flag:
        default = False
    elif spec.parse is not None and not spec.multiple:
        default = ""  # the text that parses to the field's default (a test checks it)
    callback = _refuse_empty if spec.empty else None
    return click.option(
        *spec.flags,
        spec.name,
        is_flag=spec.flag,
        multiple=spec.multiple,
        default=default,
        type=_click_type(spec, default),
        metavar=spec.metavar,
        callback=callback,
        envvar=env_name(spec.key) if spec.configurable else None,
        show_default=spec.shown_default or True,
        help=spec.help,
    )


def _refuse_empty(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A list that names nothing (`-p ''`, often an unset shell variable) is refused where it
    was typed; in a config file (`ports = ""`) it is the built-in default, written out."""
    spec = next(spec for _, _, spec in DECLARED if spec.name == param.name)
    source = ctx.get_parameter_source(spec.name)
    if not value and source is ParameterSource.COMMANDLINE:
        raise click.UsageError(f"--{spec.key}: {spec.empty}", ctx)
    if not value and source is ParameterSource.ENVIRONMENT:
        raise click.UsageError(f"{env_name(spec.key)}: {spec.empty}", ctx)
    return value


def _refuse_conflicts(ctx: click.Context) -> None:
    """Options given together on the command line that cannot both be obeyed."""
    output_format = ctx.params["format"]
    format_given = ctx.get_parameter_source("format") is ParameterSource.COMMANDLINE
    if ctx.params["json"] and format_given and output_format != "jsonl":
        raise click.UsageError(f"--json conflicts with --format {output_format}", ctx)


def _with_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for cls, path, spec in reversed(DECLARED):  # click lists the last decorator applied first
        command = _click_option(cls, path, spec)(command)
    return command


@click.command(
    cls=Command,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Exit status: 0 all answered, 1 some failed, 2 usage error, 69 the workers failed"
    " (--workers, --cluster), 70 internal error, 74 cannot write output or read input,"
    " 130 Ctrl-C, 143 SIGTERM."
    ' Shell completion: eval "$(_AFETCH_COMPLETE=bash_source afetch)" (or zsh_source,'
    " fish_source).",
)
@click.argument("targets", nargs=-1, metavar="[TARGET]...")
@_with_options
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    envvar=f"{ENV_PREFIX}_CONFIG",
    show_default="~/.config/afetch/config.toml",
    help="Option defaults from this TOML file.",
)
@click.version_option(__version__, "-V", "--version", prog_name="afetch")
def afetch(targets: tuple[str, ...], **values: Any) -> None:
    """Fetch the HTTP response headers of every TARGET.

    A target is host, host:port, [IPv6]:port or an http(s) URL. Targets come from the
    arguments, from -l FILE, and from stdin when no target is given and stdin is not a terminal.
    """
    from . import runner  # heavy: --help and --version stay fast without it
    from .scale import WorkersFailed

    try:
        config, files = Config.from_options(values), Run.from_options(values)
        prepared = runner.prepare(config, files, targets, Fanout.from_options(values))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except WorkersFailed as exc:  # a cluster none of whose workers can run afetch's chunks
        click.echo(f"afetch: error: {exc}", err=True)
        sys.exit(ExitCode.UNAVAILABLE)
    sys.exit(runner.exit_code(prepared.run()))


def main() -> None:
    """The command, without the process around it (fetcher.process.main, the console script,
    handles signals first). `afetch diff ...` (diff as the very first argument) compares two
    runs; a host called diff is still fetched as `afetch -- diff` or `afetch http://diff`."""
    if sys.argv[1:2] == ["diff"]:
        from .diff import main as diff

        sys.exit(diff(sys.argv[2:]))
    afetch(prog_name="afetch")
