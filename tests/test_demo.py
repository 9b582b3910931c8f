"""`make demo`, and what the wheel ships: no module imports a package users are not given."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

from fetcher import demo

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_offline_and_shows_seed_style_lines(capfd: pytest.CaptureFixture[str]) -> None:
    assert demo.main() == 0
    out = capfd.readouterr().out
    assert " header > HTTP/1.1 200 OK" in out
    assert " header > HTTP/1.1 301 Moved Permanently" in out
    assert "error > timeout: no response headers within 2 s" in out
    assert "error > connection-refused" in out
    assert "not a host error > invalid-input" in out
    assert "[200 OK] [demo] [text/html] [6] [127.0.0.1] [" in out  # the --format line pass
    assert "not a host [invalid-input] target contains whitespace" in out
    assert '"status_code":200' in out  # the JSON Lines pass


def test_demo_without_trustme_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "trustme", None)  # `import trustme` now raises ImportError
    assert demo.main() == 2
    assert capsys.readouterr().err == (
        "afetch demo: error: needs trustme: pip install 'afetch[demo]'\n"
    )


def declared_distributions() -> set[str]:
    """Distributions a user of the wheel can get: the dependencies and the extras but `dev`."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    requirements = [
        *project["dependencies"],
        *(r for name, group in extras.items() if name != "dev" for r in group),
    ]
    return {normalized(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in requirements}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_package_imports_only_declared_distributions() -> None:
    """Every module the wheel ships imports only the standard library, afetch itself, and
    distributions pyproject.toml declares for users (not dev tools: the demo once imported
    trustme, a dev dependency, so `python -m fetcher.demo` failed after `pip install afetch`)."""
    declared = declared_distributions()
    providers = importlib.metadata.packages_distributions()
    undeclared = set()
    for path in sorted((ROOT / "fetcher").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.partition(".")[0] for name in names}:
                if top in sys.stdlib_module_names or top == "fetcher":
                    continue
                dists = {normalized(d) for d in providers.get(top, [f"<{top}: not installed>"])}
                if not dists & declared:
                    undeclared.add(f"{path.relative_to(ROOT)} imports {top} ({', '.join(dists)})")
    assert not undeclared, sorted(undeclared)
