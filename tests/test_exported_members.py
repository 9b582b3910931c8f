"""The package's public face: exactly the documented names, each resolving, loaded lazily."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import fetcher

README = Path(__file__).resolve().parent.parent / "README.md"


def documented_names() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("The public names, importable from `fetcher`", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"`([A-Za-z_]+)`", section.split(":", 1)[1])


def test_exported_names_are_exactly_the_documented_ones() -> None:
    assert sorted(fetcher.__all__) == sorted(documented_names())


def test_every_exported_name_resolves_to_its_definition() -> None:
    for name in fetcher.__all__:
        value = getattr(fetcher, name)
        if name != "__version__":
            assert getattr(value, "__name__", name) == name, name
    assert set(fetcher.__all__) <= set(dir(fetcher))


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        fetcher.no_such_name  # noqa: B018 - the look-up is the test
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_importing_the_package_loads_no_engine() -> None:
    code = "import sys, fetcher; print(sorted(m for m in sys.modules if m.startswith('fetcher')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['fetcher', 'fetcher.version']"
