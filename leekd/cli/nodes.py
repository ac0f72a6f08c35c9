"""``leek-shell nodes``: every leekd sharing one PostgreSQL, and its lease."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

import leek

from .flow import say, table

NODE_COLUMNS = ("address", "lease", "heartbeat", "waiting", "running", "unfinished")


def cmd_nodes(client: leek.Client, args: argparse.Namespace, out: TextIO) -> None:
    info = client.request("nodes")
    if args.json:
        say(out, json.dumps(info, indent=2))
        return
    rows: list[tuple[str, ...]] = [("node", *NODE_COLUMNS)]
    for n in info.get("nodes", []):
        me = " *" if n.get("name") == info.get("me") else ""
        rows.append(
            (
                f"{n.get('name')}{me}",
                str(n.get("address", "")),
                str(n.get("lease", "")),
                f"{n.get('heartbeat_age', 0):.1f}s ago",
                *(str(n.get(k, 0)) for k in ("waiting", "running", "unfinished")),
            )
        )
    for line in table(rows):
        say(out, line)
    say(out, f"lease {info.get('lease', 0):g}s; * answered this request")
