"""The records leekd keeps: every task queued, and how each one ended.

``QueuedTask.state`` is written in the same transaction as the outcome row, so "unfinished"
is one indexed lookup at start instead of an anti-join over the outcome tables.

Every index on ``leekd_queuedtask`` is paid on each push (on SQLite each one adds about a
quarter to a commit), so it has only the ones recovery and unique keys need, both partial
(a plain push has no ``unique_key`` and writes no entry there); searches by name or date
in the admin and the retry tool are rare and scan.
"""

from __future__ import annotations

from django.db import models


class State(models.TextChoices):
    QUEUED = "queued", "queued"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


class QueuedTaskQuerySet(models.QuerySet):
    def unfinished(self) -> QueuedTaskQuerySet:
        """Queued and not yet finished: what recovery puts back on the queue."""
        return self.filter(state=State.QUEUED)

    def succeeded(self) -> QueuedTaskQuerySet:
        return self.filter(state=State.SUCCEEDED)

    def failed(self) -> QueuedTaskQuerySet:
        return self.filter(state=State.FAILED)

    def cancelled(self) -> QueuedTaskQuerySet:
        return self.filter(state=State.CANCELLED)


class QueuedTask(models.Model):
    """A task leekd accepted; the row exists before the push is answered."""

    id = models.BigAutoField(primary_key=True)
    queue = models.CharField(max_length=100, default="default")
    name = models.CharField("callable", max_length=255)
    args_preview = models.CharField(max_length=300, blank=True, default="")
    payload = models.BinaryField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    enqueued_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    max_retries = models.PositiveSmallIntegerField(default=0)
    timeout = models.FloatField(default=0.0)
    deaths = models.PositiveSmallIntegerField(
        default=0, help_text="times leekd died while running this task"
    )
    priority = models.SmallIntegerField(default=0, help_text="-100..100, higher runs first")
    run_at = models.DateTimeField(
        null=True, blank=True, help_text="not run before this time (a delayed task)"
    )
    key = models.CharField(
        max_length=64,
        null=True,
        blank=True,
        unique=True,
        help_text="made by the client: a push sent again is recorded once",
    )
    unique_key = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        help_text="while a task with this key is unfinished, pushes with it return its id",
    )
    owner = models.CharField(
        max_length=100,
        default="",
        db_default="",
        blank=True,
        help_text="the node that runs it (several nodes on one PostgreSQL); empty on one node",
    )
    epoch = models.BigIntegerField(
        default=0,
        db_default=0,
        help_text="the owner's epoch: its outcome is written only while this still holds",
    )
    job = models.ForeignKey(
        "Job",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="tasks",
        db_index=False,  # the partial index below: plain pushes pay for no index entry
        help_text="the multi-step job this task is a step of",
    )
    step = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="which step of its job (0 is the first)"
    )
    retry_of = models.ForeignKey(
        "FailedTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="retries",
        db_index=False,
    )

    objects = QueuedTaskQuerySet.as_manager()

    class Meta:
        verbose_name = "queued task"
        indexes = [
            models.Index(
                fields=["id"],
                condition=models.Q(state="queued"),
                name="leekd_qt_unfinished",
            ),
            models.Index(
                fields=["job", "id"],
                condition=models.Q(job__isnull=False),
                name="leekd_qt_job",
            ),
        ]
        constraints = [
            # One unfinished task per unique key; a finished one frees its key.
            models.UniqueConstraint(
                fields=["unique_key"],
                condition=models.Q(state="queued", unique_key__isnull=False),
                name="leekd_qt_unique_key",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name}({self.args_preview})"


class SuccessTask(models.Model):
    """A task that ran to completion."""

    task = models.OneToOneField(QueuedTask, on_delete=models.CASCADE, related_name="success")
    finished_at = models.DateTimeField()
    duration = models.FloatField(help_text="seconds, last attempt")
    attempts = models.PositiveIntegerField(default=1)
    result = models.BinaryField(
        null=True, blank=True, help_text="pickled return value, if picklable"
    )
    worker = models.CharField(max_length=100, blank=True, default="", help_text="host:pid/thread")

    class Meta:
        verbose_name = "succeeded task"
        indexes = [models.Index(fields=["finished_at"], name="leekd_st_finished")]

    def __str__(self) -> str:
        return f"#{self.task_id} succeeded"


class FailedTask(models.Model):
    """A task that failed its last attempt (or could not be loaded, or killed leekd)."""

    task = models.OneToOneField(QueuedTask, on_delete=models.CASCADE, related_name="failure")
    failed_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=1)
    exc_type = models.CharField("exception", max_length=255)
    message = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    duration = models.FloatField(default=0.0, help_text="seconds, last attempt")
    worker = models.CharField(max_length=100, blank=True, default="", help_text="host:pid/thread")

    class Meta:
        verbose_name = "failed task"
        indexes = [models.Index(fields=["failed_at"], name="leekd_ft_failed")]

    def __str__(self) -> str:
        return f"#{self.task_id} failed: {self.exc_type}"


class Attempt(models.Model):
    """An attempt that failed and was retried: what ``errors`` and ``worker_ids`` report.

    Only retried attempts get a row (the last one is the task's outcome), so a task that
    succeeds at once costs nothing here.
    """

    task = models.ForeignKey(QueuedTask, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    finished_at = models.DateTimeField()
    duration = models.FloatField(default=0.0)
    worker = models.CharField(max_length=100, blank=True, default="")
    exc_type = models.CharField("exception", max_length=255)
    message = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")

    class Meta:
        verbose_name = "retried attempt"
        constraints = [
            models.UniqueConstraint(fields=["task", "number"], name="leekd_attempt_once")
        ]

    def __str__(self) -> str:
        return f"#{self.task_id} attempt {self.number} failed: {self.exc_type}"


class Dashboard(QueuedTask):
    """No table of its own: gives the admin a "dashboard" entry in leekd's section."""

    class Meta:
        proxy = True
        verbose_name = "dashboard"
        verbose_name_plural = "dashboard"


class Node(models.Model):
    """A leekd sharing this database with others: alive while its heartbeat is fresh.

    ``epoch`` grows each time the node joins and each time another node takes its tasks
    over, so a node that was cut off learns, at its next heartbeat, that it lost them.
    """

    name = models.CharField(max_length=100, primary_key=True)
    address = models.CharField(max_length=255, blank=True, default="")
    pid = models.IntegerField(default=0)
    epoch = models.BigIntegerField(default=0)
    started_at = models.DateTimeField()
    heartbeat = models.DateTimeField()
    stopped = models.BooleanField(default=False, help_text="left cleanly; its tasks are free")
    waiting = models.IntegerField(default=0, help_text="tasks waiting, at the last heartbeat")
    running = models.IntegerField(default=0, help_text="tasks running, at the last heartbeat")

    class Meta:
        verbose_name = "node"

    def __str__(self) -> str:
        return self.name


class JobState(models.TextChoices):
    """As django-db-queue's: NEW until its first step starts, READY between steps."""

    NEW = "new", "new"
    READY = "ready", "ready"
    PROCESSING = "processing", "processing"
    COMPLETED = "completed", "completed"
    FAILED = "failed", "failed"


class JobQuerySet(models.QuerySet):
    def finished(self) -> JobQuerySet:
        return self.filter(state__in=(JobState.COMPLETED, JobState.FAILED))

    def failed(self) -> JobQuerySet:
        return self.filter(state=JobState.FAILED)


class Job(models.Model):
    """A multi-step job: its steps run one after another as tasks sharing ``workspace``.

    Each step is a ``QueuedTask`` row pointing here; the commit that records a step's
    outcome also saves the workspace, moves ``step`` on and inserts the next step's task.
    """

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=100, help_text="a key of settings.LEEK['jobs']")
    queue = models.CharField(max_length=100, default="default")
    state = models.CharField(max_length=10, choices=JobState.choices, default=JobState.NEW)
    step = models.PositiveSmallIntegerField(default=0, help_text="the step running or next")
    workspace = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    error = models.TextField(blank=True, default="", help_text="why the last step failed")

    objects = JobQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["state", "updated_at"], name="leekd_job_state")]

    def __str__(self) -> str:
        return f"job #{self.pk} {self.name}"


class Schedule(models.Model):
    """A periodic schedule's last tick: claimed with a conditional UPDATE, so one runs once."""

    name = models.CharField(max_length=200, primary_key=True)
    last_tick = models.DateTimeField(null=True, blank=True, help_text="the last tick claimed")
    last_task = models.BigIntegerField(
        null=True, blank=True, help_text="id of the task the last tick queued"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name
