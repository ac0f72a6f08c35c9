"""``leek-shell stats``: counters per queue, each named queue's pool, workers and database."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

import leek

from ..conf import format_duration
from .options import say

STAT_COLUMNS = ("waiting", "scheduled", "running", "succeeded", "failed", "retried")


def cmd_stats(client: leek.Client, args: argparse.Namespace, out: TextIO) -> None:
    stats = client.stats()
    if args.json:
        say(out, json.dumps(stats, indent=2))
        return
    workers = stats.get("workers", {})
    store = stats.get("store", {})
    say(
        out,
        f"leekd {stats.get('version', '?')} at {client.address}, up "
        f"{format_duration(stats.get('uptime', 0))}; workers {workers.get('busy', 0)}/"
        f"{workers.get('total', 0)} busy; {stats.get('connections', 0)} connection(s)",
    )
    say(
        out,
        f"{stats.get('waiting', 0)} waiting, {stats.get('handled', 0)} handled since start, "
        f"{stats.get('recovered', 0)} recovered at start; database "
        f"{'ok' if store.get('healthy', True) else 'FAILING'}, {store.get('commits', 0)} "
        f"commits ({store.get('commits_on_loop', 0)} on the event loop), "
        f"{store.get('backlog', 0)} writes pending",
    )
    cluster = stats.get("cluster")
    if cluster:
        total = cluster.get("total", {})
        say(
            out,
            f"node {cluster.get('node')} (epoch {cluster.get('epoch')}), "
            f"{total.get('alive', 0)} node(s) alive: {total.get('waiting', 0)} waiting, "
            f"{total.get('running', 0)} running, {total.get('unfinished', 0)} unfinished in all; "
            f"{cluster.get('taken_over', 0)} taken over from others, {cluster.get('lost', 0)} lost",
        )
    queues = stats.get("queues", {})
    # With named queues each has its own pool: a column of busy/total workers per queue.
    pools = stats.get("pools", {}) if stats.get("serves") is not None else {}
    if not queues and not pools:
        say(out, "no tasks seen since start")
        return
    names = sorted(set(queues) | set(pools))
    head = ("queue", *STAT_COLUMNS, *(("workers",) if pools else ()))

    def pool(name: str) -> tuple[str, ...]:
        if not pools:
            return ()
        p = pools.get(name)
        return (f"{p.get('busy', 0)}/{p.get('total', 0)}" if p else "-",)

    rows: list[tuple[str, ...]] = [head]
    rows += [
        (q, *(str(queues.get(q, {}).get(k, 0)) for k in STAT_COLUMNS), *pool(q)) for q in names
    ]
    if len(names) > 1:
        total = [str(sum(c.get(k, 0) for c in queues.values())) for k in STAT_COLUMNS]
        if pools:
            busy = sum(p.get("busy", 0) for p in pools.values())
            total.append(f"{busy}/{sum(p.get('total', 0) for p in pools.values())}")
        rows.append(("(all)", *total))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    say(out)
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [
            v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True)
        ]
        say(out, "  ".join(cells).rstrip())
