"""Print pip requirements pinning every direct dependency of afetch to its declared floor.

`make test-min` installs these and runs the test suite, so each `>=` in pyproject.toml is a
version the suite has passed with, not a guess. Runtime dependencies, the build backend and
the extras named on the command line are pinned (`name==floor`, extras and markers kept); a
requirement without a `>=` floor is an error. Lint-only tools (LINT_ONLY) are left out: the
suite never imports them, so their floors are not what this run proves.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# Gate `make lint` / `make typecheck` only; `make test-min` runs pytest.
LINT_ONLY = {"ruff", "mypy"}
# name, [extras], the >= floor, any other version clauses (dropped), ;marker
REQUIREMENT = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?P<extras>\[[^\]]*\])?\s*"
    r"(?P<specs>[^;]*?)\s*(?:;\s*(?P<marker>.+))?$"
)
FLOOR = re.compile(r">=\s*([^,\s]+)")


def floor_of(requirement: str) -> tuple[re.Match[str], str]:
    match = REQUIREMENT.match(requirement.strip())
    floor = FLOOR.search(match["specs"]) if match else None
    if match is None or floor is None:
        raise SystemExit(f"min_requirements: no >= floor in {requirement!r}")
    return match, floor[1]


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def pinned(requirement: str, floor: str | None = None) -> str:
    """`name[extras]>=1.2,<2; marker` -> `name[extras]==1.2; marker` (or ==`floor`)."""
    match, own = floor_of(requirement)
    pin = f"{match['name']}{match['extras'] or ''}=={floor or own}"
    return f"{pin}; {match['marker']}" if match["marker"] else pin


def main(extras: list[str]) -> int:
    project = tomllib.loads(PYPROJECT.read_text())
    requirements = [
        *project["build-system"]["requires"],
        *project["project"]["dependencies"],
        *(r for extra in extras for r in project["project"]["optional-dependencies"][extra]),
    ]
    # A name asked for twice (the demo extra's trustme, the dev one's) is pinned to the higher
    # floor in both places: pip refuses two different == pins of one package.
    highest: dict[str, str] = {}
    for requirement in requirements:
        match, floor = floor_of(requirement)
        name = match["name"].lower()
        if name not in highest or version_key(floor) > version_key(highest[name]):
            highest[name] = floor
    for requirement in requirements:
        name = floor_of(requirement)[0]["name"].lower()
        if name not in LINT_ONLY:
            print(pinned(requirement, highest[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
