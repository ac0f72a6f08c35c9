"""Django settings for the periodic-schedule and multi-step-job tests run as subprocesses.

The database and the directory tasks write to come from the environment, so several leekd
processes (and the test) share them; LEEK_TEST_PG_PORT switches to the PostgreSQL server
a test started; LEEK_TEST_BAD adds a broken schedule entry.
"""

import os

SECRET_KEY = "leek-tests-not-secret"
INSTALLED_APPS = ["leekd", "tests.flowapp"]
if os.environ.get("LEEK_TEST_PG_PORT"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": "127.0.0.1",
            "PORT": os.environ["LEEK_TEST_PG_PORT"],
            "NAME": "postgres",
            "USER": "postgres",
            "OPTIONS": {"connect_timeout": 2},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("LEEK_TEST_DB", "leek-flow.sqlite3"),
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 10,
            },
        }
    }
USE_TZ = True
TIME_ZONE = "Europe/Berlin"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_dir = os.environ.get("LEEK_TEST_DIR", ".")
LEEK = {
    "schedule": {
        "tick": {"task": "tests.periodic_tasks.tick", "every": "1s"},
        "no-catch-up": {"task": "tests.periodic_tasks.late", "every": "1s", "catch_up": False},
        "touch-command": {
            "command": "leek_test_touch",
            "args": ["command-runs"],
            "kwargs": {"word": "hello"},
            "every": "1s",
        },
        "nightly": {"task": "tests.tasks.noop", "cron": "30 2 * * *", "queue": "maintenance"},
    },
    "jobs": {"three": ["tests.jobs.first", "tests.jobs.second", "tests.jobs.third"]},
}
if os.environ.get("LEEK_TEST_BAD") == "task":
    LEEK["schedule"]["broken"] = {"task": "tests.periodic_tasks.missing", "every": "1m"}
elif os.environ.get("LEEK_TEST_BAD") == "cron":
    LEEK["schedule"]["bad-cron"] = {"task": "tests.tasks.noop", "cron": "61 * * * *"}
elif os.environ.get("LEEK_TEST_BAD") == "command":
    LEEK["schedule"]["no-command"] = {"command": "no_such_command", "every": "1h"}
