"""The benchmark's smoke run: ``python -m bench --quick`` still works, against ours and (when installed) Rails."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.__main__ import SCENARIOS
from bench.servers import rails_available

ROOT = Path(__file__).resolve().parent.parent
NUMBER = re.compile(r"^[\d,.]+ ?(ms|µs|KiB|MiB|%|/s)?$")
#: Rails may fall short within a scenario's bounds (a footnote says how): that is a result too.
RAILS_CELL = re.compile(r"^([\d,.]+ ?(ms|µs|KiB|MiB|%|/s)?|n/a)( \[\d+\])?$")


def test_quick_bench_fills_every_table() -> None:
    """Every scenario prints its table; every cell of ours holds a number, every cell of Rails a
    number or a footnoted shortfall."""
    servers = ["ours", "rails"] if rails_available() else ["ours"]
    command = [sys.executable, "-m", "bench", "--quick", "--silent", "--server", "both" if len(servers) == 2 else "ours"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert run.returncode == 0, run.stderr[-3000:]
    tables = run.stdout.split("\n### ")[1:]
    titles = [table.splitlines()[0] for table in tables]
    assert titles == [module.TITLE for module in SCENARIOS.values()], run.stdout
    for table in tables:
        head, *rows = [line for line in table.splitlines() if line.startswith("| ")]
        assert [cell.strip() for cell in head.strip("|").split("|")][1 : 1 + len(servers)] == servers
        assert rows, table
        for row in rows:
            cells = [cell.strip() for cell in row.strip("|").split("|")]
            assert NUMBER.match(cells[1]), f"not a number: {cells[1]!r} in\n{table}"
            if len(servers) == 2 and "on Redis" in cells[0]:  # --workers on Redis: ours only
                assert cells[2] == "—", f"a Rails cell in an ours-only row: {row}"
            elif len(servers) == 2:
                assert RAILS_CELL.match(cells[2]), f"not a Rails result: {cells[2]!r} in\n{table}"


def test_quick_abuse_bench_fills_its_table() -> None:
    """``python -m bench.abuse --quick`` runs every attack with its limit off and on, and prints a
    row for each (what the numbers are is the benchmark's to say, not a test's)."""
    run = subprocess.run([sys.executable, "-m", "bench.abuse", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ") and not line.startswith("| #")]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "2", "3", "4", "5", "6", "7", "8-9", "10", "11"], run.stdout
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 4 and all(cells), row
