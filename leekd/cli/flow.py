"""``leek-shell schedule`` and ``leek-shell job ID``: periodic schedules and multi-step jobs."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

import leek


def say(out: TextIO, text: str = "") -> None:
    out.write(text + "\n")


def table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _when(text: str | None) -> str:
    return text[:19].replace("T", " ") + " UTC" if text else "-"


def cmd_schedule(client: leek.Client, args: argparse.Namespace, out: TextIO) -> None:
    rows = client.request("schedules")
    if args.json:
        say(out, json.dumps(rows, indent=2))
        return
    if not rows:
        say(out, "no periodic schedules (settings.LEEK['schedule'] or @leek.periodic)")
        return
    lines: list[tuple[str, ...]] = [("schedule", "runs", "when", "last run", "next run", "task")]
    for r in rows:
        task = f"#{r['last_task']} {r.get('last_state') or ''}".strip() if r["last_task"] else "-"
        lines.append(
            (r["name"], r["target"], r["when"], _when(r["last_run"]), _when(r["next_run"]), task)
        )
    for line in table(lines):
        say(out, line)


def cmd_job(client: leek.Client, args: argparse.Namespace, out: TextIO) -> None:
    row: dict[str, Any] = client.request("job", id=args.id)
    if args.json:
        say(out, json.dumps(row, indent=2))
        return
    steps = row.get("steps") or []
    step = row["step"]
    name = steps[step] if step < len(steps) else "?"
    say(out, f"job {row['id']}: {row['name']} ({len(steps)} steps)")
    fields = [
        ("state", row["state"]),
        ("step", f"{step + 1} of {len(steps)}: {name}"),
        ("queue", row["queue"]),
        ("created", row["created_at"]),
        ("updated", row["updated_at"]),
    ]
    if row.get("error"):
        fields.append(("error", row["error"]))
        if row["state"] == "failed":
            fields.append(("resume", f"leek-retry-failed --job {row['id']}"))
    for label, value in fields:
        say(out, f"  {label:<9} {value}")
    say(out, "  workspace:")
    for line in json.dumps(row.get("workspace"), indent=2, sort_keys=True).splitlines():
        say(out, f"    {line}")
    if row.get("tasks"):
        tasks = ", ".join(f"#{t['id']} step {t['step'] + 1} {t['state']}" for t in row["tasks"])
        say(out, f"  tasks     {tasks}")
