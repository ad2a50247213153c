"""The test toolchain itself: a failure is reported as a failure, whatever the interpreter does inside it."""

from __future__ import annotations

import ast
import gc
from pathlib import Path

import pytest


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
