"""A small shop whose background work runs in leekd (see the README's Django section)."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "leekd", "shop"]
ROOT_URLCONF = "mysite.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB", str(BASE_DIR / "db.sqlite3")),
        "ATOMIC_REQUESTS": True,  # each view in a transaction: pushes wait for its commit
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"},
    }
}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Standard Django tasks (django.tasks; on Django 5.2 the django_tasks backport), run by leekd.
TASKS = {"default": {"BACKEND": "leekd.backend.LeekBackend", "QUEUES": ["default", "mail"]}}
# leek's own settings; the secret is derived from SECRET_KEY, so nothing else is needed here.
LEEK = {
    "port": int(os.environ.get("LEEK_PORT", "8002")),
    # A multi-step job: each step runs as a task, sharing the job's workspace.
    "jobs": {"fulfil_order": ["shop.jobs.reserve_stock", "shop.jobs.mark_fulfilled"]},
}
