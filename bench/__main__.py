"""``python -m bench``: every scenario against our server and against Rails ActionCable, back to back.

    .venv/bin/python -m bench                       # everything, both servers (~10 minutes)
    .venv/bin/python -m bench --quick               # small sizes, under a minute (the CI smoke test)
    .venv/bin/python -m bench --only fanout,idle --server ours --fanout-clients 1000

Prints a header (machine, versions, load generator) and a markdown table per scenario as it
completes: columns ours | rails | ratio, the ratio written so that >1 means ours is better.
Progress goes to stderr. See ``bench/README.md`` for what each scenario measures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from types import ModuleType

from . import burst, chats, fanout, idle, storm, stream
from .common import raise_nofile
from .loadgen import LoadGen
from .report import Table
from .scenario import Context
from .servers import SERVERS, rails_available, versions

__all__ = ["SCENARIOS", "main"]

SCENARIOS: dict[str, ModuleType] = {module.NAME: module for module in (fanout, idle, storm, stream, burst, chats)}


def _counts(text: str) -> list[int]:
    try:
        return [int(part.replace("k", "000")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected counts like 100,1000,10k; got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole run in under a minute")
    parser.add_argument("--only", type=lambda text: text.split(","), help=f"scenarios, comma-separated: {','.join(SCENARIOS)}")
    parser.add_argument("--server", choices=["ours", "rails", "both"], default="both", help="servers to measure (default both)")
    parser.add_argument(
        "--loadgen-procs",
        type=int,
        default=1,
        help="load-generator processes (default 1: with the server, that fills 2 cores)",
    )
    parser.add_argument(
        "--uvloop", action=argparse.BooleanOptionalAction, help="load generator on uvloop (default: if installed)"
    )
    parser.add_argument("--silent", action="store_true", help="no progress lines on stderr")
    sizes = parser.add_argument_group("sizes (default: the full run's, or --quick's)")
    sizes.add_argument("--fanout-clients", type=_counts, help="e.g. 100,1000,5000,10000")
    sizes.add_argument("--broadcasts", type=int, help="broadcasts per fan-out size (20; quick 5)")
    sizes.add_argument("--idle-clients", type=_counts, help="e.g. 1000,10000,15000")
    sizes.add_argument("--idle-seconds", type=float, help="quiet window (15; quick 3.5)")
    sizes.add_argument("--storm-clients", type=_counts, help="e.g. 2000")
    sizes.add_argument("--storm-concurrency", type=int, default=200, help="connections in flight in the storm (200)")
    sizes.add_argument("--stream-chunks", type=_counts, help="chunks of the flat-out answer (20000; quick 2000)")
    sizes.add_argument("--burst-messages", type=_counts, help="messages of the EchoChannel burst (20000; quick 2000)")
    sizes.add_argument("--chats", type=_counts, help="concurrent chats (20,100,300,1000; quick 10)")
    sizes.add_argument("--redis-chats", type=_counts, help="concurrent chats on Redis, --workers 2 (300,1000; quick 10)")
    sizes.add_argument("--chat-chunks", type=int, help="chunks per chat answer at 20 tokens/s (100; quick 20)")
    return parser


def header(ctx: Context, command: str) -> str:
    """The lines above the tables: what ran where."""
    found = versions("rails" in ctx.servers)
    lines = [
        f"## `{command}`",
        "",
        f"- machine: {found['machine']}; {time.strftime('%Y-%m-%d')}",
        f"- ours: {found['ours']}",
    ]
    if "rails" in found:
        lines.append(f"- rails: {found['rails']}")
    lines.append(
        f"- load generator: {ctx.loadgen.processes} process(es) on {ctx.loadgen.loop_name} (raw asyncio.Protocol "
        "clients, orjson); its CPU is a row of each table (% of one core, busiest process)"
    )
    lines.append("- ratio: rails/ours for times, CPU and memory; ours/rails for rates: above 1, ours is better")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark with ``argv`` (default: the command line)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    options = build_parser().parse_args(arguments)
    names = options.only or list(SCENARIOS)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise SystemExit(f"bench: unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    servers: tuple[str, ...] = SERVERS if options.server == "both" else (options.server,)
    if "rails" in servers and not rails_available():
        if options.server == "rails":
            raise SystemExit("bench: Rails is not installed (protocol_tests/rails_reference/install)")
        print("bench: Rails is not installed (protocol_tests/rails_reference/install); measuring ours only", file=sys.stderr)
        servers = ("ours",)
    raise_nofile()
    loadgen = LoadGen(options.loadgen_procs, options.uvloop)
    ctx = Context(options, loadgen, servers)
    started = time.monotonic()
    try:
        print(header(ctx, " ".join(["python -m bench", *arguments])), flush=True)
        for name in names:
            module = SCENARIOS[name]
            table = Table(name, module.TITLE)
            module.run(ctx, table)
            print("\n" + table.markdown(servers), flush=True)
    finally:
        loadgen.close()
    print(f"\n({time.monotonic() - started:.0f} s; {os.cpu_count()} cores)", flush=True)


if __name__ == "__main__":
    main()
