import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("leekd", "0006_unique_key")]

    operations = [
        migrations.AddField(
            model_name="successtask",
            name="worker",
            field=models.CharField(
                blank=True, default="", help_text="host:pid/thread", max_length=100
            ),
        ),
        migrations.AddField(
            model_name="failedtask",
            name="duration",
            field=models.FloatField(default=0.0, help_text="seconds, last attempt"),
        ),
        migrations.AddField(
            model_name="failedtask",
            name="worker",
            field=models.CharField(
                blank=True, default="", help_text="host:pid/thread", max_length=100
            ),
        ),
        migrations.CreateModel(
            name="Attempt",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("number", models.PositiveIntegerField()),
                ("finished_at", models.DateTimeField()),
                ("duration", models.FloatField(default=0.0)),
                ("worker", models.CharField(blank=True, default="", max_length=100)),
                ("exc_type", models.CharField(max_length=255, verbose_name="exception")),
                ("message", models.TextField(blank=True, default="")),
                ("traceback", models.TextField(blank=True, default="")),
                (
                    "task",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="attempt_log",
                        to="leekd.queuedtask",
                    ),
                ),
            ],
            options={"verbose_name": "retried attempt"},
        ),
        migrations.AddConstraint(
            model_name="attempt",
            constraint=models.UniqueConstraint(
                fields=("task", "number"), name="leekd_attempt_once"
            ),
        ),
    ]
