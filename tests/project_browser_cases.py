"""The dashboard in headless Chromium, driven by Selenium, against a live server of the project.

Not collected by the main suite: tests/django/test_dashboard_browser.py runs it in a process
of its own (Django is configured once per process) and decides whether Chromium is there.
By hand, which also refreshes the README's screenshot:

    LEEK_SECRET=x LEEK_TEST_DB=/tmp/p.sqlite3 DJANGO_SETTINGS_MODULE=tests.project_settings \
        LEEK_SCREENSHOT=docs/dashboard.png python -m pytest --noconftest tests/project_browser_cases.py
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

if os.environ.get("DJANGO_SETTINGS_MODULE") != "tests.project_settings":
    pytest.skip("run through tests/django/test_dashboard_browser.py", allow_module_level=True)

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from leekd.models import FailedTask, QueuedTask  # noqa: E402

from . import tasks  # noqa: E402
from .helpers import wait_for  # noqa: E402
from .project_admin_cases import client, leekd  # noqa: E402, F401  (fixtures)

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1120",
)


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site(leekd) -> Iterator[str]:  # noqa: F811
    """The project served over HTTP, static files included (the admin's and leekd's)."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.handlers.wsgi import WSGIHandler

    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler)
    server.set_app(StaticFilesHandler(WSGIHandler()))
    thread = threading.Thread(target=server.serve_forever, name="live-site", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("LEEK_CHROMIUM", "/usr/bin/chromium")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    service = Service(os.environ.get("LEEK_CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def cell(driver, queue: str, column: str) -> str:
    found = driver.find_elements(
        By.CSS_SELECTOR, f'tr[data-queue="{queue}"] td[data-count="{column}"]'
    )
    return found[0].text if found else ""


def steady(wait, read):
    """``read(driver)``, tried again while the page's refresh replaces the element under it."""
    return wait.until(lambda d: (read(d),))[0]


def test_dashboard_in_chromium(client, site, chromium, tmp_path: Path):  # noqa: F811
    # Given a known workload on three queues: successes of varied length, and failures,
    handled = client.stats()["handled"]  # the schedule's catch-up run at start among them
    for i in range(6):
        client.push(tasks.add, (i, i), queue="mail")
    for seconds in (0.01, 0.02, 0.05, 0.12):
        client.push(tasks.sleep, (seconds,), queue="thumbnails")
    flaky = client.push(tasks.fail_until, (str(tmp_path), "flaky", 1), max_retries=1)
    broken = client.push(tasks.fail, ("the SMTP server said no",), queue="mail", max_retries=1)
    wait_for(lambda: client.stats()["handled"] >= handled + 12 and client.waiting() == 0)
    for task_id in (flaky, broken):
        wait_for(lambda t=task_id: client.status(t)["state"] == "failed")
    User.objects.create_superuser("browser", "b@example.com", "a-password-for-tests")

    # when an admin logs in and opens the dashboard (refreshing every second),
    driver = chromium
    wait = WebDriverWait(
        chromium, 20, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    )
    driver.get(f"{site}/admin/login/?next=/admin/leekd/dashboard/%3Frefresh%3D1")
    driver.find_element(By.NAME, "username").send_keys("browser")
    driver.find_element(By.NAME, "password").send_keys("a-password-for-tests")
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait.until(lambda d: d.find_elements(By.ID, "leek-dashboard"))

    # then it shows each queue's counts, two charts with a failed bar, the slowest callable,
    counts = steady(
        wait,
        lambda d: [
            cell(d, q, c)
            for q, c in [("mail", "succeeded"), ("mail", "failed"), ("thumbnails", "succeeded")]
            + [("default", "failed"), ("mail", "waiting")]
        ],
    )
    assert counts == ["6", "1", "4", "1", "0"]
    assert len(driver.find_elements(By.CSS_SELECTOR, "svg.leek-chart")) == 2
    assert driver.find_elements(By.CSS_SELECTOR, "#leek-chart-hour rect.leek-failed")
    slowest = steady(wait, lambda d: d.find_element(By.CSS_SELECTOR, "#leek-slowest tbody tr").text)
    assert slowest.startswith("tests.tasks.sleep 4 ")
    # the periodic schedule with its next run and a link to its last task,
    schedule = 'tr[data-schedule="nightly-report"]'
    text = steady(wait, lambda d: d.find_element(By.CSS_SELECTOR, schedule).text)
    assert "tests.tasks.noop" in text and "(in " in text and "succeeded" in text
    assert driver.find_elements(By.CSS_SELECTOR, f"{schedule} a[href*='/queuedtask/']")
    # and it refreshes itself without reloading the page.
    driver.execute_script("window.leekSamePage = 42")
    again = client.push(tasks.add, (9, 9), queue="mail")
    wait_for(lambda: client.status(again)["state"] == "succeeded")
    wait.until(lambda d: cell(d, "mail", "succeeded") == "7")
    assert driver.execute_script("return window.leekSamePage") == 42
    assert "Refreshed at" in steady(wait, lambda d: d.find_element(By.ID, "leek-refreshed").text)
    shot = Path(os.environ.get("LEEK_SCREENSHOT") or tmp_path / "dashboard.png")
    driver.save_screenshot(str(shot))

    # When the admin clicks Retry on the flaky task's failure,
    failure = FailedTask.objects.get(task_id=flaky)
    button = f'tr[data-failure="{failure.pk}"] button'
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, button).click() or True)
    # then leekd queues it again, the page says as which task, and it succeeds this time.
    wait.until(lambda d: "Queued 1 failed task(s) again" in d.page_source)
    retry = QueuedTask.objects.get(retry_of=failure)
    message = steady(
        wait, lambda d: d.find_element(By.CSS_SELECTOR, "ul.messagelist li.success").text
    )
    assert re.fullmatch(rf"Queued 1 failed task\(s\) again as #{retry.pk}\.", message)
    wait_for(lambda: client.status(retry.pk)["state"] == "succeeded")
    row = f'tr[data-failure="{failure.pk}"]'
    wait.until(lambda d: f"retried as #{retry.pk}" in d.find_element(By.CSS_SELECTOR, row).text)
    link = f"{row} a[href$='/queuedtask/{retry.pk}/change/']"
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, link).click() or True)
    wait.until(lambda d: f"#{retry.pk}" in d.title or "succeeded at" in d.page_source)
    assert "succeeded at" in driver.page_source
