"""The benchmark still works: ``scripts/bench --smoke`` end to end (figures are not checked)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from .helpers import ROOT
from .postgres import require_postgres

FIGURES = [
    "enqueue, sequential push (tasks/s)",
    "enqueue, push_many (tasks/s)",
    "end-to-end, sequential push (tasks/s)",
    "end-to-end, push_many (tasks/s)",
    "push latency p50 (ms)",
    "push latency p99 (ms)",
    "client CPU per sequential push (µs)",
    "idle RSS (MiB)",
    "peak RSS (MiB)",
    "2 clients: enqueue, all at once (tasks/s)",
    "2 clients: end-to-end (tasks/s)",
    "2 clients: push latency p50 (ms)",
    "2 clients: push latency p99 (ms)",
    "2 clients: client CPU per push (µs)",
    "2 clients: server's busiest thread on a CPU (%)",
    "2 clients: server's busiest thread waiting for one (%)",
    "memory per waiting task (bytes)",
    "start to ping with the backlog waiting (s)",
]


def smoke(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEEK_")}
    env["BENCH_PYTHON"] = sys.executable  # the venv running these tests
    done = subprocess.run(
        [str(ROOT / "scripts" / "bench"), "--smoke", "--peers", "none", "--workdir", str(tmp_path)]
        + list(extra),
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_bench_smoke_prints_every_figure_with_a_number(tmp_path):
    out_json = tmp_path / "bench.json"
    done = smoke(tmp_path, "--unix", "--json", str(out_json))
    for name in FIGURES:
        line = next((ln for ln in done.stdout.splitlines() if name in ln), None)
        assert line is not None, f"{name!r} missing from:\n{done.stdout}"
        assert re.search(r"\d[\d,]*(\.\d+)?\s*($|\S)", line.split(name, 1)[1]), line
    floor = next((ln for ln in done.stdout.splitlines() if "floor:" in ln), "")
    assert re.search(r"p50 / p99 \d+\.\d+ / \d+\.\d+ ms", floor), done.stdout
    # Every rate has the server's CPU per task beside it.
    for name in [n for n in FIGURES if "tasks/s" in n]:
        line = next(ln for ln in done.stdout.splitlines() if name in ln)
        assert re.match(r"\s+[\d,]+\s+[\d,]+(\s|$)", line.split(name, 1)[1]), line
    assert out_json.exists()
    data = json.loads(out_json.read_text())
    assert set(data["floor"]) == {"threaded", "asyncio", "unix"}
    leek = data["systems"]["leek"]["median"]
    for key in ("cpu_enqueue", "cpu_e2e", "cpu_e2e_many", "cpu_enqueue_c2", "cpu_e2e_c2"):
        assert leek[key] >= 0, key
    for key in ("client_cpu", "client_cpu_c2"):  # a push costs its client something
        assert leek[key] > 0, key
    assert leek["tasks_c2"] == 300 and leek["clients_c2"] == 2
    # leekd's loop ran through the phase, and a thread cannot wait for a CPU longer than it
    # exists: both shares of the window are real percentages.
    assert 0 < leek["thread_run_c2"] <= 100, leek
    assert 0 <= leek["thread_wait_c2"] <= 100, leek
    # --unix: the same leekd with its clients on a Unix-domain socket, in its own column.
    header = next(ln for ln in done.stdout.splitlines() if "leek on a Unix socket" in ln)
    assert header.index("leek on a Unix socket") > header.index("leek ")
    unix = data["systems"]["leek-unix"]["median"]
    assert unix["e2e"] > 0 and unix["cpu_e2e"] > 0 and unix["tasks_c2"] == 300
    assert not list((tmp_path / "run").glob("*/*")), "run directories left behind"


@pytest.mark.postgres
def test_bench_postgres_measures_leek_on_a_server_it_starts_and_stops(tmp_path):
    require_postgres()
    out_json = tmp_path / "bench.json"
    done = smoke(tmp_path, "--postgres", "--json", str(out_json))
    header = next(ln for ln in done.stdout.splitlines() if "leek on PostgreSQL" in ln)
    assert header.index("leek on PostgreSQL") > header.index("leek ")
    pg = json.loads(out_json.read_text())["systems"]["leek-pg"]["median"]
    assert pg["e2e"] > 0 and pg["cpu_e2e"] > 0 and pg["tasks_c2"] == 300
    # and the server it started is gone with the run.
    left = subprocess.run(["pgrep", "-f", "leek-bench-pg-"], capture_output=True, text=True)
    assert left.stdout.strip() == "", left.stdout


def head_commit() -> str:
    """This checkout's commit; skipped outside a git checkout, which CI never is."""
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if head.returncode:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run from a git checkout: {head.stderr.strip()}")
        pytest.skip("not a git checkout: --baseline has no commits to export")
    return head.stdout.strip()


def test_bench_baseline_measures_another_commit_beside_this_checkout(tmp_path):
    sha = head_commit()
    out_json = tmp_path / "bench.json"
    done = smoke(tmp_path, "--baseline", "HEAD", "--json", str(out_json))
    header = next(ln for ln in done.stdout.splitlines() if f"leek {sha[:8]}" in ln)
    assert header.index(f"leek {sha[:8]}") > header.index("leek ")
    data = json.loads(out_json.read_text())
    base = data["systems"]["leek-baseline"]
    exported = tmp_path / "baseline" / sha
    # Its server and client import that commit's packages, exported from git beside the
    # run (the label says where they came from, as processes started as theirs are find them).
    assert sha[:12] in base["label"]
    assert f"its leekd and leek from {(exported / 'src').resolve()}" in base["label"]
    assert base["median"]["e2e"] > 0 and base["median"]["cpu_e2e"] > 0
    assert "leek-baseline" in data["ratios"]
    assert (exported / "path" / "leekd").resolve() == (exported / "src" / "leekd").resolve()
    assert (exported / "src" / "leekd" / "__init__.py").is_file()
    unknown = subprocess.run(
        [str(ROOT / "scripts" / "bench"), "--smoke", "--peers", "none", "--baseline", "no-such"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert unknown.returncode != 0 and "no such commit" in unknown.stderr


def test_bench_instructions_counts_each_part_for_this_checkout_and_a_baseline(tmp_path):
    if shutil.which("valgrind") is None:
        if os.environ.get("CI"):
            pytest.fail("valgrind is missing under CI (.ci/run installs it)")
        pytest.skip("valgrind is not installed")
    head_commit()
    out_json = tmp_path / "ir.json"
    done = subprocess.run(
        [
            str(ROOT / "scripts" / "bench"),
            "--instructions",
            "--baseline",
            "HEAD",
            "--tasks",
            "1000",
            "--workdir",
            str(tmp_path),
            "--json",
            str(out_json),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "BENCH_PYTHON": sys.executable},  # this run's Python and Django
    )
    assert done.returncode == 0, done.stderr[-3000:]
    counts = json.loads(out_json.read_text())["instructions"]
    ours, base = counts["leek"], counts[next(k for k in counts if k != "leek")]
    for part in ("client", "push", "outcome"):
        assert ours[part] > 1000, (part, ours)  # each part does real work
        # The same code on both sides counts within a few per cent: the count is exact
        # enough to see a change that timings on a shared machine cannot.
        assert abs(ours[part] / base[part] - 1) < 0.05, (part, ours, base)
    assert ours["total"] == pytest.approx(ours["client"] + ours["push"] + ours["outcome"])
    assert "server: writing the outcome rows" in done.stdout
