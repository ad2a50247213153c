"""The list of differences from Rails is complete: each entry is pinned by a case."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from .differences import DIFFERENCES


def marked_keys() -> set[str]:
    keys: set[str] = set()
    for path in Path(__file__).parent.glob("test_*.py"):
        module = importlib.import_module(f"{__package__}.{path.stem}")
        for _, function in inspect.getmembers(module, inspect.isfunction):
            keys.update(mark.args[0] for mark in getattr(function, "pytestmark", []) if mark.name == "differs")
    return keys


def test_every_difference_is_pinned_by_a_case() -> None:
    """Each row of the README's difference tables has a case asserting both answers."""
    assert marked_keys() == set(DIFFERENCES)
