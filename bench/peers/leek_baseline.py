"""leek as another commit has it: ``--baseline REV`` measures that commit's leekd and client
beside this checkout's in one run, alternating, so a change is benched before and after on
the same machine at the same time.

The commit's tree is exported with ``git archive`` into ``.bench/baseline/<sha>/src`` (once
per commit), and its ``leekd`` and ``leek`` packages are put first on the path of its server
and of its client. The project's venv supplies the dependencies and this checkout the bench
itself, so only leek's own code differs between the two columns.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from bench import procs

from . import ROOT, Server, base_env
from .leek import SECRET, LeekSystem, start_leekd


def resolve(rev: str) -> str:
    """The full commit id of ``rev`` in this checkout's repository."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode:
        raise procs.BenchError(f"--baseline {rev}: no such commit in {ROOT}")
    return done.stdout.strip()


def export(sha: str, base: Path) -> Path:
    """``base/baseline/<sha>/path``: a directory whose ``leek`` and ``leekd`` are that commit's."""
    home = base / "baseline" / sha
    path = home / "path"
    if (path / "leekd").exists() and (path / "leek").exists():
        return path
    shutil.rmtree(home, ignore_errors=True)
    src = home / "src"
    src.mkdir(parents=True)
    archive = subprocess.Popen(
        ["git", "-C", str(ROOT), "archive", "--format=tar", sha], stdout=subprocess.PIPE
    )
    untar = subprocess.run(["tar", "-x", "-C", str(src)], stdin=archive.stdout, timeout=120)
    assert archive.stdout is not None
    archive.stdout.close()
    if archive.wait(timeout=120) or untar.returncode:
        raise procs.BenchError(f"could not export commit {sha[:12]} into {src}")
    if not (src / "client").is_dir() or not (src / "leekd").is_dir():
        raise procs.BenchError(
            f"commit {sha[:12]} has no client/ and leekd/ packages: it predates this layout"
        )
    path.mkdir()
    (path / "leek").symlink_to(src / "client")
    (path / "leekd").symlink_to(src / "leekd")
    return path


def imported_from(path: Path, module: str, cwd: Path) -> Path:
    """Where ``module`` comes from with ``path`` first on the import path, run in ``cwd``."""
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}; print({module}.__file__)"],
        env=base_env(path),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode:
        raise procs.BenchError(f"the baseline's {module} does not import:\n{done.stderr[-2000:]}")
    return Path(done.stdout.strip()).resolve().parent


class LeekBaselineSystem(LeekSystem):
    def __init__(self, rev: str, base: Path) -> None:
        sha = resolve(rev)
        self.path = export(sha, base)
        # As its processes will import them: the server in a run directory, the client in
        # this checkout (whose own leekd/ must not win there).
        src = (self.path.parent / "src").resolve()
        server = imported_from(self.path, "leekd", self.path.parent)
        client = imported_from(self.path, "leek", ROOT)
        if server != src / "leekd" or client != src / "client":
            raise procs.BenchError(
                f"the baseline would run leekd from {server} and leek from {client}, not from {src}"
            )
        self.name = "leek-baseline"
        self.column = f"leek {sha[:8]}"
        self.label = (
            f"leek at {rev} (commit {sha[:12]}, its leekd and leek from {src}), leekd with 4 "
            "workers, embedded SQLite (WAL), run from the project's venv"
        )

    def start(self, workdir: Path, workers: int = 4) -> Server:
        db = workdir / "leek.sqlite3"
        proc, port, log = start_leekd(workdir, db, workers, paths=(self.path,))
        return Server(
            proc,
            log,
            sys.executable,
            base_env(self.path, LEEK_SECRET=SECRET, LEEK_PORT=str(port)),
            {"driver": "bench.peers.leek", "db": str(db)},
        )
