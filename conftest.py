"""Every test session here (tests/ and protocol_tests/): ``ast.parse`` with garbage collection held off.

CPython 3.11 and 3.12 keep the AST constructor's recursion depth in state that every call shares.
pytest parses source files to format a failure; if a garbage collection runs while it builds that
tree and finalizes an asyncio task or future whose exception was never retrieved, asyncio logs the
exception, logging formats its traceback, and the traceback module parses again (3.11's caret
lines). The nested parse resets the shared depth, and the outer one raises ``SystemError: AST
constructor recursion depth mismatch`` for a tree it built correctly: pytest reports an
INTERNALERROR and stops, so one failing test hides every other result.

With collection held off for the length of a parse, no Python code runs inside the constructor, so
nothing can parse in the middle of it. Nothing is caught or retried: every error of a parse is raised
as the interpreter raises it. ``tests/test_toolchain.py`` reproduces the nested parse.
"""

from __future__ import annotations

import ast
import gc
import sys
import threading
from typing import Any

_parse = ast.parse
_lock = threading.Lock()
_parsing = 0  # parses in progress, in any thread: the last one out turns collection back on
_collecting = False  # whether collection was on when the first one came in


def _parse_without_collection(*args: Any, **kwargs: Any) -> Any:
    global _parsing, _collecting
    with _lock:
        if _parsing == 0:
            _collecting = gc.isenabled()
            gc.disable()
        _parsing += 1
    try:
        return _parse(*args, **kwargs)
    finally:
        with _lock:
            _parsing -= 1
            if _parsing == 0 and _collecting:
                gc.enable()


if sys.version_info < (3, 13):
    ast.parse = _parse_without_collection
