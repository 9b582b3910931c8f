"""afetch uses httpx, httpcore and python-socks through their public API only: no private module
or name is imported or read, and no class of ours assigns to an attribute its httpx/httpcore base
uses.

A private name can change in any release without notice; `make test-latest` runs the suite on
the newest httpx and httpcore to catch a public one that changes.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

import fetcher

FOREIGN = {"httpx", "httpcore", "python_socks"}  # top-level module names
SOURCES = sorted(Path(fetcher.__file__).parent.rglob("*.py"))


def private_uses(tree: ast.AST) -> list[str]:
    """Imports of private foreign modules or names, and reads of `httpx._x`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if _foreign_private(a.name.split("."))]
        elif isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] in FOREIGN:
                found += [f"{node.module}.{a.name}" for a in node.names if _private([a.name])]
                if _private(parts[1:]):
                    found.append(node.module)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in FOREIGN and node.attr.startswith("_"):
                found.append(f"{node.value.id}.{node.attr}")
    return found


def _private(parts: list[str]) -> bool:
    return any(part.startswith("_") for part in parts)


def _foreign_private(parts: list[str]) -> bool:
    return parts[0] in FOREIGN and _private(parts[1:])


def foreign_attribute_clashes(module: object) -> list[str]:
    """`self._x` names a class of ours uses that its httpx/httpcore base classes use too."""
    clashes = []
    for cls in vars(module).values():
        if not inspect.isclass(cls) or cls.__module__ != getattr(module, "__name__", None):
            continue
        bases = [b for b in cls.__mro__[1:] if b.__module__.split(".")[0] in FOREIGN]
        if not bases:
            continue
        ours = _self_attributes(cls)
        for base in bases:
            theirs = _self_attributes(base)
            clashes += [f"{cls.__name__}.{name} ({base.__name__})" for name in ours & theirs]
    return clashes


def _self_attributes(cls: type) -> set[str]:
    """The `self._x` names a class's own methods use. Method by method: httpx and httpcore
    rename their classes' __module__, which keeps inspect from finding a class's source."""
    names: set[str] = set()
    for member in vars(cls).values():
        if inspect.isfunction(member):
            names.update(re.findall(r"self\.(_\w+)", inspect.getsource(member)))
    return names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_private_httpx_or_httpcore_name(path: Path) -> None:
    assert private_uses(ast.parse(path.read_text(encoding="utf-8"))) == []


def test_the_checks_catch_what_they_look_for() -> None:
    sample = (
        "import httpx._models\nfrom httpcore._async import x\nfrom httpx import _y\nhttpx._z\n"
        "from python_socks._errors import ProxyError\nfrom python_socks.async_ import asyncio\n"
    )
    assert private_uses(ast.parse(sample)) == [
        "httpx._models",
        "httpcore._async",
        "httpx._y",
        "python_socks._errors",
        "httpx._z",  # ast.walk: statements first, then what is inside them
    ]

    class Replaces(httpx.AsyncHTTPTransport):  # what the old backend did
        def __init__(self) -> None:
            super().__init__()
            self._pool = None  # type: ignore[assignment]

    module = SimpleNamespace(Replaces=Replaces, __name__=Replaces.__module__)
    assert foreign_attribute_clashes(module) == ["Replaces._pool (AsyncHTTPTransport)"]


def test_no_class_of_ours_touches_its_foreign_base_attributes() -> None:
    from fetcher.backends import httpx_backend

    assert foreign_attribute_clashes(httpx_backend) == []
