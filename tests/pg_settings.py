"""Django settings for the PostgreSQL tests; the server is started by the test itself."""

import os

SECRET_KEY = "leek-tests-not-secret"
INSTALLED_APPS = ["leekd"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("LEEK_TEST_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("LEEK_TEST_PG_PORT", "5432"),
        "NAME": "postgres",
        "USER": "postgres",
        "OPTIONS": {"connect_timeout": 2},
    }
}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
