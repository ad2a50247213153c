"""Results as markdown tables: one per scenario, a row per measured quantity, columns ours | rails | ratio.

The ratio is always written so that above 1 means ours is better: rails/ours for what should be
low (latency, CPU, memory), ours/rails for what should be high (rates). Rows that only give
context (the load generator's CPU, pings received) have no ratio. A cell that could not be
measured says so with a footnote under its table, instead of a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Cell", "Metric", "Table"]

#: Above this, a load-generator process was close to a full core: its numbers are flagged.
LOADGEN_SATURATED = 80.0


@dataclass(frozen=True)
class Metric:
    """A measured quantity: its label, unit, and which way is better ("lower", "higher", "" for context)."""

    label: str
    unit: str
    better: str = "lower"


@dataclass(frozen=True)
class Cell:
    """One value, or ``None`` and a note saying why there is none (or what to know about it)."""

    value: float | None
    note: str = ""


def _number(value: float, unit: str) -> str:
    if unit == "%":
        text = f"{value:.1f}" if value < 10 else f"{value:,.0f}"
    elif unit in ("/s", "µs", "MiB", ""):
        text = f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"
    else:  # ms, KiB, s
        text = f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"
    return f"{text} {unit}".rstrip() if unit not in ("%", "/s") else f"{text}{unit}"


@dataclass
class Table:
    """The results of one scenario, filled as the measurements come in."""

    name: str
    title: str
    notes: list[str] = field(default_factory=list)
    rows: dict[str, tuple[Metric, dict[str, Cell]]] = field(default_factory=dict)

    def put(self, group: str, metric: Metric, server: str, cell: Cell) -> None:
        """Record ``cell`` for ``server`` in the row ``"<group>: <metric>"``."""
        label = f"{group}: {metric.label}" if group else metric.label
        self.rows.setdefault(label, (metric, {}))[1][server] = cell

    def values(self, server: str) -> dict[str, float | None]:
        """Every row's value for ``server`` (``None``: not measured)."""
        return {label: cells[server].value if server in cells else None for label, (_, cells) in self.rows.items()}

    def markdown(self, servers: tuple[str, ...] | list[str]) -> str:
        """The table, its notes and its footnotes, in markdown."""
        footnotes: list[str] = []

        def show(metric: Metric, cell: Cell | None) -> str:
            if cell is None:
                return "—"
            text = "n/a" if cell.value is None else _number(cell.value, metric.unit)
            note = cell.note
            loadgen = metric.label.startswith("load generator CPU")
            if cell.value is not None and loadgen and cell.value > LOADGEN_SATURATED:
                note = note or "load generator near saturation: the row's other numbers may understate the server"
            if note:
                if note not in footnotes:
                    footnotes.append(note)
                text += f" [{footnotes.index(note) + 1}]"
            return text

        both = "ours" in servers and "rails" in servers
        head = ["", *servers] + (["ratio (>1: ours better)"] if both else [])
        lines = [f"### {self.title}", "", *([*self.notes, ""] if self.notes else [])]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for label, (metric, cells) in self.rows.items():
            row = [label, *(show(metric, cells.get(server)) for server in servers)]
            if both:
                row.append(_ratio(metric, cells.get("ours"), cells.get("rails")))
            lines.append("| " + " | ".join(row) + " |")
        if footnotes:
            lines += ["", *(f"- [{n}] {note}" for n, note in enumerate(footnotes, 1))]
        return "\n".join(lines)


def _ratio(metric: Metric, ours: Cell | None, rails: Cell | None) -> str:
    if not metric.better or ours is None or rails is None or ours.value is None or rails.value is None:
        return ""
    low, high = (ours.value, rails.value) if metric.better == "lower" else (rails.value, ours.value)
    if low <= 0:
        return "∞" if high > 0 else ""
    return f"{high / low:,.1f}x" if high / low < 100 else f"{high / low:,.0f}x"
