from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import SECRET, LeekdProcess, subprocess_env

os.environ["LEEK_SECRET"] = SECRET
os.environ.pop("DJANGO_SETTINGS_MODULE", None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run the long soak tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="soak test: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def django_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This process's Django, on leekd's built-in settings and a real SQLite file."""
    from django.conf import settings

    from leekd.bootstrap import configure_embedded

    path = tmp_path_factory.mktemp("db") / "leek.sqlite3"
    if not settings.configured:
        configure_embedded(path)
    return Path(settings.DATABASES["default"]["NAME"])


@pytest.fixture
def make_server(django_db: Path, tmp_path: Path) -> Iterator:
    """Start in-process leekd servers on ephemeral ports; all are stopped at teardown."""
    from leekd.app import Leekd
    from leekd.conf import Config
    from leekd.runner import ServerThread

    started: list[ServerThread] = []

    def make(**overrides):
        options = dict(host="127.0.0.1", port=0, workers=2, retry_delay=0.01, grace=5.0)
        options["running_file"] = str(tmp_path / f"leekd-{len(started)}.running")
        options.update(overrides)
        thread = ServerThread(Leekd(Config(**options).validate(), SECRET.encode()))
        thread.start()
        started.append(thread)
        return thread.app

    yield make
    for t in started:
        if t.thread.is_alive():
            t.stop()


@pytest.fixture
def server(make_server):
    return make_server()


@pytest.fixture
def client(server) -> Iterator:
    import leek

    c = leek.Client(port=server.port, secret=SECRET)
    yield c
    c.close()


@pytest.fixture
def leekd_proc(tmp_path: Path) -> Iterator:
    """A factory for ``leekd run`` subprocesses on one SQLite file; killed at teardown."""
    procs: list[LeekdProcess] = []

    def make(*args: str, db: Path | None = None, **env: str) -> LeekdProcess:
        p = LeekdProcess(db or tmp_path / "leek.sqlite3", *args, env=subprocess_env(**env))
        procs.append(p)
        return p.start()

    yield make
    for p in procs:
        p.kill()


def rows(db: Path, sql: str, *params) -> list[tuple]:
    """Read a leekd database directly (for subprocess tests)."""
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
