"""Figures, medians, ratios and the text tables.

Every rate has a server CPU figure beside it (``cpu_key``): microseconds of user + system
CPU of the server's process tree over that rate's window, divided by its tasks. The client's
own CPU per push (its pushing thread's ``time.thread_time()``) is a row of its own: a site's
web workers pay it, on the same cores as the server when they share a machine.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

CPU_TARGET = 100.0  # µs of server CPU per task, for every rate
TARGET_PEER = "huey"  # the peer the ratio targets are measured against, in the same run


@dataclass(frozen=True)
class Figure:
    key: str
    name: str
    unit: str
    higher_is_better: bool
    target: float | None = None  # leek's absolute target
    cpu_key: str | None = None  # the server CPU per task over the same window
    peer_target: float | None = None  # leek/Huey, same run: at least this (rates), at most (ms)

    def fmt(self, value: float | None) -> str:
        if value is None:
            return "—"
        if self.unit == "tasks/s":
            return f"{value:,.0f}"
        if self.unit == "ms":
            return f"{value:.3f}" if value < 1 else f"{value:.2f}"
        if self.unit == "MiB":
            return f"{value:.1f}"
        if self.unit == "µs":
            return f"{value:,.0f}"
        if self.unit == "%":
            return f"{value:.1f}"
        return f"{value:.3g}"

    def target_text(self) -> str:
        op = "≥" if self.higher_is_better else "≤"
        parts = []
        if self.target is not None:
            parts.append(f"{op} {self.fmt(self.target)}")
        if self.peer_target is not None:
            parts.append(f"{op} {self.peer_target:g}× {TARGET_PEER}")
        return ", ".join(parts)

    def meets(self, value: float | None, peer: float | None = None) -> bool | None:
        """Whether ``value`` meets every target there is a figure to judge it by."""
        checks = []
        if self.target is not None and value is not None:
            checks.append(value >= self.target if self.higher_is_better else value <= self.target)
        r = ratio(value, peer)
        if self.peer_target is not None and r is not None:
            checks.append(r >= self.peer_target if self.higher_is_better else r <= self.peer_target)
        return all(checks) if checks else None


ONE_CLIENT = [
    Figure("enqueue", "enqueue, sequential push", "tasks/s", True, None, "cpu_enqueue", 1.5),
    Figure("enqueue_many", "enqueue, push_many", "tasks/s", True, 100_000, "cpu_enqueue_many"),
    Figure("e2e", "end-to-end, sequential push", "tasks/s", True, None, "cpu_e2e", 10),
    Figure("e2e_many", "end-to-end, push_many", "tasks/s", True, None, "cpu_e2e_many"),
    Figure("p50", "push latency p50", "ms", False, None, None, 1.0),
    Figure("p99", "push latency p99", "ms", False),
    Figure("client_cpu", "client CPU per sequential push", "µs", False),
]
MEMORY = [
    Figure("idle_rss", "idle RSS", "MiB", False, 40),
    Figure("peak_rss", "peak RSS", "MiB", False),
]
FIGURES = ONE_CLIENT + MEMORY  # without --clients


def many_clients(n: int) -> list[Figure]:
    """The figures of the phase where ``n`` client processes push at once."""
    c = f"_c{n}"
    return [
        Figure(
            f"enqueue{c}",
            f"{n} clients: enqueue, all at once",
            "tasks/s",
            True,
            None,
            f"cpu_enqueue{c}",
            3,
        ),
        Figure(f"e2e{c}", f"{n} clients: end-to-end", "tasks/s", True, None, f"cpu_e2e{c}", 10),
        Figure(f"p50{c}", f"{n} clients: push latency p50", "ms", False, 1.0),
        Figure(f"p99{c}", f"{n} clients: push latency p99", "ms", False, 5.0),
        Figure(f"client_cpu{c}", f"{n} clients: client CPU per push", "µs", False),
        Figure(f"thread_run{c}", f"{n} clients: server's busiest thread on a CPU", "%", True),
        Figure(
            f"thread_wait{c}", f"{n} clients: server's busiest thread waiting for one", "%", False
        ),
    ]


def figures(clients: list[int]) -> list[Figure]:
    """The table's rows for a run with these client counts (``--clients``)."""
    rows = list(ONE_CLIENT) if 1 in clients else []
    for n in clients:
        if n > 1:
            rows += many_clients(n)
    return rows + MEMORY


SCALE_FIGURES = [
    ("tasks", "backlog (tasks waiting behind one busy worker)", "{:,.0f}"),
    ("push_rate", "push_many into the backlog (tasks/s)", "{:,.0f}"),
    ("push_client_us", "  the client's CPU per task, records made and sent (µs)", "{:.1f}"),
    ("push_server_us", "  leekd's CPU per task, frames read and rows inserted (µs)", "{:.1f}"),
    ("rss_before", "leekd RSS before the backlog (MiB)", "{:.1f}"),
    ("rss_after", "leekd RSS with the backlog (MiB)", "{:.1f}"),
    ("bytes_per_task", "memory per waiting task (bytes)  target ≤ 1,536", "{:,.0f}"),
    ("start_empty", "start to first ping, empty database (s)", "{:.2f}"),
    ("recover_logged", "recovery as logged by leekd (s)", "{:.2f}"),
    ("start_backlog", "start to ping with the backlog waiting (s)  target ≤ 5", "{:.2f}"),
    ("rss_recovered", "leekd RSS after recovery (MiB)", "{:.1f}"),
    ("bytes_per_recovered", "memory per recovered task (bytes)", "{:,.0f}"),
]


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def medians(rounds: list[dict[str, Any]]) -> dict[str, float | None]:
    """The median of every number the rounds hold, key by key."""
    keys = dict.fromkeys(
        k for r in rounds for k, v in r.items() if isinstance(v, int | float) and k != "errors"
    )
    return {k: median([r.get(k) for r in rounds]) for k in keys}


def ratios(
    leek: dict[str, float | None], peer: dict[str, float | None], rows: list[Figure]
) -> dict[str, float | None]:
    """leek/peer for every figure of ``rows`` and its CPU per task (counts have none)."""
    keys = [k for f in rows for k in (f.key, f.cpu_key) if k is not None]
    return {k: ratio(leek.get(k), peer.get(k)) for k in keys}


def ratio(leek: float | None, peer: float | None) -> float | None:
    if leek is None or peer is None or peer == 0:
        return None
    return leek / peer


def table(rows: list[list[str]], right_from: int = 1) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.ljust(w) if i < right_from else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


CPU_HEAD = "µs CPU"


def cpu_cell(f: Figure, figures: dict[str, float | None]) -> str:
    if f.cpu_key is None:
        return ""
    value = figures.get(f.cpu_key)
    return "—" if value is None else f"{value:,.0f}"


def main_table(
    systems: list[Any],
    results: dict[str, dict[str, float | None]],
    title: str,
    rows_for: list[Figure] = FIGURES,
) -> str:
    """Rows are figures; columns: leek, its server CPU per task, its target, then each peer
    with its server CPU per task and leek/peer."""
    leek = results["leek"]
    peers = [s for s in systems if s.name != "leek"]
    head = [title, "leek", CPU_HEAD, "target", ""]
    for p in peers:
        head += [p.column, CPU_HEAD, "leek/"]
    rows = [head]
    for f in rows_for:
        if all(results[s.name].get(f.key) is None for s in systems):
            continue
        ok = f.meets(leek.get(f.key), results.get(TARGET_PEER, {}).get(f.key))
        row = [f"{f.name} ({f.unit})", f.fmt(leek.get(f.key)), cpu_cell(f, leek), f.target_text()]
        row.append("" if ok is None else ("ok" if ok else "MISS"))
        for p in peers:
            value = results[p.name].get(f.key)
            r = ratio(leek.get(f.key), value)
            row += [f.fmt(value), cpu_cell(f, results[p.name]), "—" if r is None else f"{r:,.2f}×"]
        rows.append(row)
    return table(rows) + "\n" + cpu_verdict(leek, rows_for)


def cpu_verdict(leek: dict[str, float | None], rows_for: list[Figure]) -> str:
    """One line: which of leek's CPU-per-task figures meet the target."""
    judged = [
        (f.name, cpu)
        for f in rows_for
        if f.cpu_key is not None and (cpu := leek.get(f.cpu_key)) is not None
    ]
    if not judged:
        return ""
    over = [f"{name} {cpu:,.0f}" for name, cpu in judged if cpu > CPU_TARGET]
    head = f"leek's server CPU per task: target ≤ {CPU_TARGET:g} µs,"
    if not over:
        return f"{head} ok for every rate"
    return f"{head} MISS for {'; '.join(over)} (ok for {len(judged) - len(over)} of {len(judged)})"


def scale_table(figures: dict[str, Any]) -> str:
    rows = [["scale (leek)", "value"]]
    for key, name, fmt in SCALE_FIGURES:
        value = figures.get(key)
        rows.append([name, "—" if value is None else fmt.format(value)])
    return table(rows)


INSTRUCTION_PARTS = [
    ("client", "client: make_record and the push frame's encoding"),
    ("push", "server: decoding the frame, inserting the rows"),
    ("outcome", "server: writing the outcome rows"),
    ("total", "all of the above"),
]


def instructions_table(counts: dict[str, dict[str, float]], n: int) -> str:
    """Instructions per task for each leek measured; the first column over each other one."""
    names = list(counts)
    head = [f"instructions per task (valgrind, {n:,} tasks)"]
    for k, name in enumerate(names):
        head += [name] if k == 0 else [name, "leek/"]
    rows = [head]
    first = counts[names[0]]
    for key, label in INSTRUCTION_PARTS:
        row = [label, f"{first[key]:,.0f}"]
        for name in names[1:]:
            other = counts[name][key]
            r = ratio(first[key], other)
            row += [f"{other:,.0f}", "—" if r is None else f"{r:.3f}×"]
        rows.append(row)
    return table(rows)
