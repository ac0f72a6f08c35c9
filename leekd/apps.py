from django.apps import AppConfig


class LeekdConfig(AppConfig):
    name = "leekd"
    verbose_name = "leek task queue"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
