"""``scripts/bench``: the same workload through leek and its peers, alternating, in one run."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import procs, report
from bench.peers import NAMES, ROOT, get
from bench.progress import note

DEFAULT_PEERS = ",".join(NAMES)


def positive_int(text: str) -> int:
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def client_counts(text: str) -> list[int]:
    """``8`` or ``1,8``: the client counts to run, each a phase of every round."""
    counts = [positive_int(n.strip()) for n in text.split(",") if n.strip()]
    if not counts:
        raise argparse.ArgumentTypeError("give one or more client counts, such as 1,8")
    return sorted(set(counts))


def peer_list(text: str) -> list[str]:
    if text.strip() in ("", "none"):
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(NAMES)} or none"
        )
    return list(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Measure leek beside django-leek and Huey: the same no-op workload through "
        "each, alternating runs, median of the rounds, ratios leek/peer.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--tasks", type=positive_int, default=5000, help="no-op tasks per phase")
    p.add_argument(
        "--clients",
        type=client_counts,
        default=[1],
        help="client processes pushing at once, or a list such as 1,8 (one phase each); "
        "1 is the sequential, push_many and latency phases",
    )
    p.add_argument(
        "--client-tasks",
        type=positive_int,
        help="tasks each client pushes when several push at once (default: --tasks / N)",
    )
    p.add_argument("--rounds", type=positive_int, default=3, help="rounds per system (median)")
    p.add_argument(
        "--latency-pushes", type=positive_int, default=1000, help="pushes timed for p50/p99"
    )
    p.add_argument("--batch", type=positive_int, default=1000, help="tasks per push_many call")
    p.add_argument(
        "--peers",
        type=peer_list,
        default=DEFAULT_PEERS,
        help=f"comma-separated peers from {DEFAULT_PEERS}, or none",
    )
    p.add_argument(
        "--postgres",
        action="store_true",
        help="also measure leek on PostgreSQL, a throwaway server the bench starts and removes "
        "(needs PostgreSQL's server binaries); its column follows leek's",
    )
    p.add_argument(
        "--unix",
        action="store_true",
        help="also measure leek with its clients on a Unix-domain socket (leekd's --unix, for "
        "clients on its host); its column follows leek's",
    )
    p.add_argument(
        "--baseline",
        metavar="REV",
        help="also measure leek as git commit REV has it (HEAD~1, main, a tag), beside this "
        "checkout, alternating: a change benched before and after in one run; its column "
        "follows leek's",
    )
    p.add_argument(
        "--instructions",
        action="store_true",
        help="instead of timing, count the machine instructions per task of the hot path's "
        "code under valgrind (client, push, outcome; --tasks of them), for this checkout and "
        "--baseline: exact where timings are noise",
    )
    p.add_argument("--scale", action="store_true", help="also run the scale section (leek)")
    p.add_argument(
        "--scale-tasks", type=positive_int, default=200_000, help="backlog size for --scale"
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="write every figure to PATH")
    p.add_argument(
        "--timeout",
        type=positive_int,
        default=600,
        help="seconds any one wait for outcomes may take before the run fails",
    )
    p.add_argument(
        "--workdir", type=Path, default=ROOT / ".bench", help="peers' venv and run directories"
    )
    p.add_argument("--keep", action="store_true", help="keep databases and logs of the run")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="a quick check that the benchmark works (CI): tiny sizes, one round, leek only, "
        "no installs",
    )
    return p


def apply_smoke(args: argparse.Namespace) -> None:
    args.tasks, args.rounds, args.latency_pushes, args.batch = 300, 1, 100, 100
    args.peers, args.scale, args.scale_tasks, args.timeout = [], True, 2000, 30
    args.clients, args.client_tasks = [1, 2], None


def git_commit() -> dict[str, Any]:
    def git(*a: str) -> str:
        try:
            done = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--", "client", "leekd")),
    }


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def baseline(args: argparse.Namespace) -> Any:
    """The ``--baseline`` commit's leek, exported and checked, or None."""
    if not args.baseline:
        return None
    from bench.peers.leek_baseline import LeekBaselineSystem

    return LeekBaselineSystem(args.baseline, args.workdir)


def run_instructions(args: argparse.Namespace) -> int:
    from bench.instructions import BATCH, measure

    n = max(BATCH, args.tasks // BATCH * BATCH)
    columns: list[tuple[str, tuple[Path, ...]]] = [("leek", ())]
    base = baseline(args)
    if base is not None:
        columns.append((base.column, (base.path,)))
    counts = {}
    for name, paths in columns:
        note(f"instructions: {name}, {n:,} tasks under valgrind")
        counts[name] = measure(paths, n)
    print(report.instructions_table(counts, n))
    if args.json:
        data = {"bench": 1, "leek": git_commit(), "instructions": counts, "tasks": n}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.instructions:
        return run_instructions(args)
    venv = None
    versions: dict[str, str] = {}
    if args.peers:
        from bench.env import peers_venv
        from bench.env import versions as peer_versions

        venv = peers_venv(args.workdir)
        versions = peer_versions(venv)
    systems = [get("leek", None)]
    base = baseline(args)
    systems += [base] if base is not None else []
    systems += [get("leek-pg", None)] if args.postgres else []
    systems += [get("leek-unix", None)] if args.unix else []
    systems += [get(name, venv) for name in args.peers]
    rundir = args.workdir / "run" / time.strftime("%Y%m%d-%H%M%S")
    spec = {
        "tasks": args.tasks,
        "clients": args.clients,
        "client_tasks": args.client_tasks,
        "latency_pushes": args.latency_pushes,
        "batch": args.batch,
        "timeout": args.timeout,
    }
    rounds: dict[str, list[dict[str, Any]]] = {s.name: [] for s in systems}
    ok = False
    try:
        from bench.floor import measure

        note("floor: a bare Python echo round trip over loopback")
        floor = measure(args.latency_pushes * 2)
        for r in range(1, args.rounds + 1):
            for s in systems:
                note(f"round {r}/{args.rounds}: {s.name}")
                figures = run_round_of(s, rundir / f"{s.name}-{r}", spec)
                rounds[s.name].append(figures)
                for line in summary(figures):
                    note(line)
        results = {name: report.medians(rs) for name, rs in rounds.items()}
        scale = None
        if args.scale:
            from bench.scale import run_scale

            note(f"scale: {args.scale_tasks:,} tasks behind one busy worker")
            scale = run_scale(rundir / "scale", args.scale_tasks, args.batch, args.timeout)
        ok = True
    finally:
        procs.kill_all()
        if ok and not args.keep:
            shutil.rmtree(rundir, ignore_errors=True)
        elif rundir.exists():
            note(f"databases and logs kept in {rundir}")

    title = f"median of {args.rounds}, {args.tasks:,} tasks"
    if 1 in args.clients:
        title += f", push_many ×{args.batch:,}"
    print()
    rows = report.figures(args.clients)
    print(report.main_table(systems, results, title, rows))
    print()
    print(
        f"  {report.CPU_HEAD} = the server's CPU per task: user + system time (from /proc) of "
        "its whole process tree\n    over that rate's window, divided by its tasks; — where "
        "no server takes part\n    (Huey's client enqueues into SQLite itself)."
    )
    for n in args.clients:
        if n > 1:
            each = args.client_tasks or max(1, args.tasks // n)
            print(
                f"  {n} clients: {n} processes, each with its own connection, push {each:,} "
                "tasks each from one go;\n    enqueue ends when the last push is answered, "
                "end-to-end when the last outcome\n    is recorded; latency over all their "
                "pushes. The server's busiest thread is the one of its\n    process tree "
                "that ran the most from go until the last outcome (leekd's event loop):\n    "
                "the share of that time it was on a CPU, and the share it was ready to run "
                "but\n    waiting for one (/proc/PID/task/TID/schedstat)."
            )
    if len(systems) > 1:
        print(
            "  leek/ = leek's figure divided by the peer's column to its left: above 1 is "
            "better for rates, below 1 for latency and memory."
        )
    for s in systems:
        print(f"  {s.column}: {s.label}")
    if versions:
        print("  peers installed: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    m = machine()
    print(f"  machine: {m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, {m['platform']}")
    print(
        "  floor: a bare Python echo round trip over loopback, between two processes, p50 / "
        f"p99 {floor['threaded']['p50']:.3f} / {floor['threaded']['p99']:.3f} ms with a "
        f"blocking-socket server, {floor['asyncio']['p50']:.3f} / {floor['asyncio']['p99']:.3f} "
        f"ms with an asyncio one on leekd's loop; {floor['unix']['p50']:.3f} / "
        f"{floor['unix']['p99']:.3f} ms for the blocking one on a Unix socket; the echo server's "
        f"CPU per round trip {floor['threaded']['cpu_us']:.0f} µs (blocking), "
        f"{floor['asyncio']['cpu_us']:.0f} µs (asyncio): no server answers for less"
    )
    errors = {name: sum(r.get("errors", 0) for r in rs) for name, rs in rounds.items()}
    if any(errors.values()):
        print(f"  refused pushes (not counted in the rates): {errors}")
    if scale is not None:
        print()
        print(report.scale_table(scale))
    if args.json:
        data = {
            "bench": 1,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": m,
            "leek": git_commit(),
            "peer_versions": versions,
            "config": {k: v for k, v in spec.items()} | {"rounds": args.rounds},
            "systems": {
                s.name: {"label": s.label, "rounds": rounds[s.name], "median": results[s.name]}
                for s in systems
            },
            "ratios": {
                s.name: report.ratios(results["leek"], results[s.name], rows)
                for s in systems
                if s.name != "leek"
            },
            "scale": scale,
            "floor": floor,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        note(f"figures written to {args.json}")
    return 0


def run_round_of(system: Any, workdir: Path, spec: dict[str, Any]) -> dict[str, Any]:
    from bench.rounds import run_round

    return run_round(system, workdir, spec)


def summary(f: dict[str, Any]) -> list[str]:
    """One line per round: each phase's rates, latency, and CPU per end-to-end task."""
    phases = []
    for c in [""] + [k[len("e2e") :] for k in f if k.startswith("e2e_c")]:
        if f"e2e{c}" not in f:
            continue
        who = f"{c[2:]} clients" if c else "1 client"
        parts = [f"enqueue {f[f'enqueue{c}']:,.0f}/s", f"end-to-end {f[f'e2e{c}']:,.0f}/s"]
        if not c and "enqueue_many" in f:
            parts.append(f"push_many {f['enqueue_many']:,.0f}/s")
        parts += [
            f"p50 {f[f'p50{c}']:.3f} ms",
            f"p99 {f[f'p99{c}']:.3f} ms",
            f"{f[f'cpu_e2e{c}']:,.0f} µs CPU/task",
        ]
        phases.append(f"  {who}: " + ", ".join(parts))
    return phases + [f"  idle {f['idle_rss']:.1f} MiB"]


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop the servers


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        apply_smoke(args)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return run(args)
    except procs.BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; servers stopped", file=sys.stderr)
        return 130
