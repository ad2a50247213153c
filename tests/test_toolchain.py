"""The test toolchain itself: a failure is reported as a failure, whatever the interpreter does inside it."""

from __future__ import annotations

import ast
import gc
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


class _ParsesWhenCollected:
    """Garbage in a reference cycle whose finalizer parses, as asyncio's report of a lost task
    exception does on CPython 3.11 (logging formats the traceback; the traceback module parses)."""

    def __init__(self) -> None:
        self.cycle = self

    def __del__(self) -> None:
        ast.parse("answer(question)[0] + 1")


def test_a_parse_survives_a_collection_that_parses_inside_it() -> None:
    """What pytest does to format a failure (parse a source file) while the collector finalizes
    such garbage: on CPython 3.11 and 3.12 the nested parse broke the outer one with ``SystemError:
    AST constructor recursion depth mismatch``, an INTERNALERROR that stopped the run. The root
    conftest.py holds collection off during a parse."""
    source = Path(ast.__file__).read_text()
    gc.collect()
    threshold = gc.get_threshold()
    gc.set_threshold(1)  # collect on (almost) every allocation, as a busy test session may
    try:
        garbage = [_ParsesWhenCollected() for _ in range(100)]
        del garbage
        tree = ast.parse(source)
    finally:
        gc.set_threshold(*threshold)
        gc.collect()
    assert any(isinstance(node, ast.FunctionDef) and node.name == "parse" for node in tree.body)


def test_a_parse_still_raises_what_the_source_deserves() -> None:
    with pytest.raises(SyntaxError):
        ast.parse("def broken(:\n")
    assert gc.isenabled()


def _entries(lock: str) -> dict[str, str]:
    """Each pinned package of a lock file: its name, and its whole entry (version, hashes, ``# via``)."""
    entries = re.split(r"\n(?=[\w.-]+==)", (ROOT / lock).read_text())
    return {canonicalize_name(entry.split("==", 1)[0]): entry for entry in entries if re.match(r"[\w.-]+==", entry)}


def _pins(lock: str) -> dict[str, Version]:
    return {name: Version(re.split(r"[\s;\\]", entry.split("==", 1)[1], maxsplit=1)[0]) for name, entry in _entries(lock).items()}


def _requirements(*groups: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = [*project["project"]["dependencies"], *project["project"]["optional-dependencies"]["speedups"]]
    for group in groups:
        listed += project["dependency-groups"][group]
    return [Requirement(requirement) for requirement in listed]


LOCKS = [("requirements.lock", ("build",)), ("requirements-dev.lock", ("build", "dev"))]


@pytest.mark.parametrize(("lock", "groups"), LOCKS)
def test_each_lock_satisfies_the_ranges_of_pyproject(lock: str, groups: tuple[str, ...]) -> None:
    """A range edited in pyproject.toml without ``scripts/lock`` fails here, not on a user's machine."""
    pins = _pins(lock)
    for requirement in _requirements(*groups):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in {lock}"
        allowed = requirement.specifier.contains(pins[name], prereleases=True)
        assert allowed, f"{lock}: {name}=={pins[name]} is outside {requirement}"


@pytest.mark.parametrize(("lock", "groups"), LOCKS)
def test_each_lock_was_resolved_from_the_dependencies_pyproject_lists_now(lock: str, groups: tuple[str, ...]) -> None:
    """A dependency removed from pyproject.toml (or added) without ``scripts/lock`` fails here."""
    direct = {name for name, entry in _entries(lock).items() if "cable-server (pyproject.toml" in entry}
    assert direct == {canonicalize_name(requirement.name) for requirement in _requirements(*groups)}


def test_the_demo_runs_the_versions_the_tests_ran() -> None:
    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    assert {name: dev.get(name) for name in runtime} == runtime


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock", "scripts/uv-requirements.txt"])
def test_every_locked_distribution_carries_its_hashes(lock: str) -> None:
    entries = _entries(lock)
    assert entries
    assert all("--hash=sha256:" in entry for entry in entries.values())
