"""Commands run from a project directory: autodiscovery, the import path, leek-shell, read-only dirs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import leek

from ..helpers import SECRET, LeekdProcess, subprocess_env, wait_for


def make_project(root: Path, tasks_py: str) -> dict[str, str]:
    """A project in ``root``: settings, manage.py, and an app ``shop`` with ``tasks.py``."""
    (root / "shop").mkdir()
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "tasks.py").write_text(textwrap.dedent(tasks_py))
    (root / "mysite_settings.py").write_text(
        textwrap.dedent(
            f"""
            SECRET_KEY = "project-key-for-tests"
            INSTALLED_APPS = ["leekd", "shop"]
            DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3",
                                       "NAME": {str(root / "db.sqlite3")!r}}}}}
            USE_TZ = True
            DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
            """
        )
    )
    (root / "manage.py").write_text(
        'import os, sys\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite_settings")\n'
        "from django.core.management import execute_from_command_line\n"
        "execute_from_command_line(sys.argv)\n"
    )
    env = subprocess_env()
    env.pop("LEEK_SECRET")  # the secret comes from the project's SECRET_KEY
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "leekd", "-v", "0"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    return env


def test_autodiscovery_imports_app_task_modules_and_shell_works_from_the_project(tmp_path):
    env = make_project(tmp_path, "open('imported', 'w').write('yes')\n")
    p = LeekdProcess(tmp_path / "unused.sqlite3", "--settings", "mysite_settings", env=env)
    try:
        p.start()
        assert "task modules: shop.tasks" in p.output()
        assert (tmp_path / "imported").exists()
        # leek-shell from the project directory, with no settings given: manage.py names them
        for cmd in (
            ["-m", "leekd.cli.shell", "--port", str(p.port), "ping"],
            [
                "-m",
                "leekd.cli.shell",
                "--settings",
                "mysite_settings",
                "--port",
                str(p.port),
                "ping",
            ],
            ["manage.py", "leek_shell", "--port", str(p.port), "waiting"],
        ):
            out = subprocess.run(
                [sys.executable, *cmd], cwd=tmp_path, env=env, capture_output=True, text=True,
                timeout=60,
            )  # fmt: skip
            assert out.returncode == 0, (cmd, out.stdout, out.stderr)
    finally:
        p.stop()


def test_a_task_module_that_fails_to_import_stops_leekd_naming_the_app(tmp_path):
    env = make_project(tmp_path, "import no_such_module_here\n")
    out = subprocess.run(
        [sys.executable, "-m", "leekd", "run", "--port", "0", "--settings", "mysite_settings"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 78, out.stderr
    assert "cannot import shop.tasks (app 'shop')" in out.stderr
    assert "no_such_module_here" in out.stderr and "Traceback" not in out.stderr
    settings = tmp_path / "mysite_settings.py"
    settings.write_text(settings.read_text() + "LEEK = {'autodiscover': False}\n")
    p = LeekdProcess(tmp_path / "unused.sqlite3", "--settings", "mysite_settings", env=env)
    try:
        p.start()
    finally:
        p.stop()


def test_standalone_leekd_imports_tasks_from_its_directory_and_says_where_it_looked(
    leekd_proc, tmp_path, monkeypatch
):
    (tmp_path / "mytasks.py").write_text("def hello(name):\n    return f'hello {name}'\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "hidden_tasks.py").write_text("def hidden():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(elsewhere))
    import hidden_tasks
    import mytasks

    p = leekd_proc()  # runs in tmp_path
    with leek.Client(port=p.port, secret=SECRET) as c:
        assert c.result(c.push(mytasks.hello, ("you",)), timeout=15) == "hello you"
        bad = c.push(hidden_tasks.hidden)
        with pytest.raises(leek.LeekTaskFailed) as info:
            c.result(bad, timeout=15)
    assert "could not load the task (leekd imports from: " in info.value.message
    assert str(tmp_path) in info.value.message
    wait_for(lambda: "hidden_tasks" in p.output())


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """``directory`` unwritable for leekd: mode 0555, or as root (who writes anywhere) an
    empty read-only tmpfs mounted over it."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    mount = ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(directory)]
    done = subprocess.run(mount, capture_output=True, text=True, timeout=30)
    if done.returncode:
        reason = f"root cannot mount a read-only tmpfs here: {done.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield
    finally:
        subprocess.run(["umount", str(directory)], capture_output=True, timeout=30)


def test_read_only_directory_says_what_to_do(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):
        out = subprocess.run(
            [sys.executable, "-m", "leekd", "run", "--port", "0"],
            cwd=locked, env=subprocess_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert out.returncode == 78
    assert f"cannot create leek.sqlite3 in {locked}" in out.stderr and "pass --db" in out.stderr
    assert "Traceback" not in out.stderr


def test_reload_restarts_gracefully_when_a_task_module_changes(tmp_path):
    import re
    import signal

    env = make_project(tmp_path, "def version():\n    return 1\n")
    p = LeekdProcess(
        tmp_path / "unused.sqlite3", "--settings", "mysite_settings", "--reload", env=env
    )
    try:
        p.start()  # shop.tasks was imported at start (autodiscovery), so it is watched
        tasks_py = tmp_path / "shop" / "tasks.py"
        tasks_py.write_text("def version():\n    return 2\n")
        later = tasks_py.stat().st_mtime + 10  # a new mtime, however coarse the clock
        os.utime(tasks_py, (later, later))
        wait_for(lambda: p.output().count("listening on") == 2, timeout=30)
        out = p.output()
        assert "shop/tasks.py changed; restarting leekd" in out and "leekd stopped" in out
        pids = re.findall(r"listening on \S+ \(pid (\d+)", out)
        assert len(set(pids)) == 2
        assert p.stop() == 0  # SIGTERM to the parent reaches the child
    finally:
        for pid in re.findall(r"listening on \S+ \(pid (\d+)", p.output()):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.kill()
