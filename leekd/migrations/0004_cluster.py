"""Several nodes on one PostgreSQL: the node table, and who owns each task at which epoch."""

from django.db import migrations, models

# Takeover looks up a dead node's unfinished tasks. Only PostgreSQL runs several nodes, and
# an index is paid on every push, so SQLite does not get it (nor the model state).
_OWNER_INDEX = "leekd_qt_owner_unfinished"


def _add_owner_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {_OWNER_INDEX} ON leekd_queuedtask (owner) "
            "WHERE state = 'queued'"
        )


def _drop_owner_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {_OWNER_INDEX}")


class Migration(migrations.Migration):
    dependencies = [
        ("leekd", "0003_dashboard"),
    ]

    operations = [
        migrations.CreateModel(
            name="Node",
            fields=[
                ("name", models.CharField(max_length=100, primary_key=True, serialize=False)),
                ("address", models.CharField(blank=True, default="", max_length=255)),
                ("pid", models.IntegerField(default=0)),
                ("epoch", models.BigIntegerField(default=0)),
                ("started_at", models.DateTimeField()),
                ("heartbeat", models.DateTimeField()),
                (
                    "stopped",
                    models.BooleanField(
                        default=False, help_text="left cleanly; its tasks are free"
                    ),
                ),
                (
                    "waiting",
                    models.IntegerField(
                        default=0, help_text="tasks waiting, at the last heartbeat"
                    ),
                ),
                (
                    "running",
                    models.IntegerField(
                        default=0, help_text="tasks running, at the last heartbeat"
                    ),
                ),
            ],
            options={
                "verbose_name": "node",
            },
        ),
        migrations.AddField(
            model_name="queuedtask",
            name="epoch",
            field=models.BigIntegerField(
                db_default=0,
                default=0,
                help_text="the owner's epoch: its outcome is written only while this still holds",
            ),
        ),
        migrations.AddField(
            model_name="queuedtask",
            name="owner",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                help_text="the node that runs it (several nodes on one PostgreSQL); empty on one node",
                max_length=100,
            ),
        ),
        migrations.RunPython(_add_owner_index, _drop_owner_index, elidable=False),
    ]
