"""The example project (examples/mysite) as the README walks through it, on a real leekd."""

from __future__ import annotations

import json
import subprocess
import sys

from ..helpers import ROOT, LeekdProcess, subprocess_env

SITE = ROOT / "examples" / "mysite"

VISIT = """
import json, time
from django.test import Client
import leek
web = Client()
placed = web.post("/orders/", {"email": "ann@example.com"}).json()
shipped = web.post(f"/orders/{placed['order']}/ship/").json()
job = web.post(f"/orders/{placed['order']}/fulfil/").json()
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    state = web.get(f"/orders/{placed['order']}/").json()
    if state["receipt_sent"] and state["shipped"] and state["fulfilled"]:
        break
    time.sleep(0.05)
result = web.get(f"/tasks/{placed['task']}/").json()
schedules = [s["name"] for s in leek.get_client().request("schedules")]
job_state = leek.get_client().request("job", id=job["job"])["state"]
print(json.dumps({"placed": placed, "shipped": shipped, "state": state, "result": result,
                  "schedules": schedules, "job": job_state}))
"""


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=SITE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_example_project_enqueues_pushes_on_commit_and_runs_a_job(tmp_path):
    db = tmp_path / "example.sqlite3"
    env = subprocess_env(EXAMPLE_DB=str(db), PYTHONPATH=f"{SITE}:{ROOT}")
    migrate = _manage(env, "migrate", "-v", "0")
    assert migrate.returncode == 0, migrate.stderr
    p = LeekdProcess(db, "--settings", "mysite.settings", env=env)
    try:
        p.start()
        assert "task modules: shop.tasks" in p.output()
        visit = _manage({**env, "LEEK_PORT": str(p.port)}, "shell", "-c", VISIT)
        assert visit.returncode == 0, visit.stderr
        seen = json.loads(visit.stdout.strip().splitlines()[-1])
    finally:
        p.stop()
    assert seen["state"] == {"receipt_sent": True, "shipped": True, "fulfilled": True}
    assert seen["job"] == "completed"
    assert "shop.tasks.nightly_summary" in seen["schedules"]
    assert isinstance(seen["placed"]["task"], str) and seen["shipped"]["task"] is None
    assert seen["result"] == {"status": "SUCCESSFUL", "value": "receipt sent to ann@example.com"}
