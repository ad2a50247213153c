"""Print ``name==version`` for each package of pyproject.toml's dev and build groups, as requirements-dev.lock pins it.

``scripts/install --lowest`` resolves the package's own dependencies at their lower bounds with these
as constraints: the check is of the ranges users install from, not of older test and build tools.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> None:
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    tools = [*groups["dev"], *groups["build"]]
    wanted = {normalized(re.match(r"[A-Za-z0-9._-]+", requirement)[0]) for requirement in tools}  # type: ignore[index]
    locked = re.findall(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", (ROOT / "requirements-dev.lock").read_text(), re.MULTILINE)
    pins = {normalized(name): version for name, version in locked if normalized(name) in wanted}
    missing = wanted - pins.keys()
    if missing:
        sys.exit(f"locked_tools: not in requirements-dev.lock: {', '.join(sorted(missing))} (run scripts/lock)")
    for name in sorted(pins):
        print(f"{name}=={pins[name]}")


if __name__ == "__main__":
    main()
