"""Multi-step jobs on the engine's side: the steps of each job, and what a step is given.

A job (``settings.LEEK["jobs"]``: a name → a list of dotted paths to functions) runs its
steps one after another, each as a task. A step is called with a ``JobView``; what it
writes into ``job.workspace`` is saved, as JSON, in the commit that records its outcome,
and the next step sees it. ``load`` (handed in by app.py) reads the saved workspace and
marks the job as processing when a step starts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.utils.module_loading import import_string

from leek.errors import LeekConfigError

from ..job import Job, StepDone

MAX_STEPS = 100
LoadStep = Callable[[int, int], "tuple[str, dict[str, Any]]"]  # (job id, step) → (name, workspace)


@dataclass
class JobView:
    """What a step is called with: ``job.workspace`` is the dict the steps share."""

    id: int
    name: str
    step: int
    workspace: dict[str, Any] = field(default_factory=dict)
    steps: int = 1  # how many steps the job has


def resolve_jobs(value: Any) -> dict[str, list[str]]:
    """Check ``settings.LEEK["jobs"]`` and import every step; a bad one names its job."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise LeekConfigError('settings.LEEK["jobs"] must be a dict: job name → list of steps')
    jobs: dict[str, list[str]] = {}
    for name, steps in value.items():
        where = f"settings.LEEK['jobs'][{name!r}]"
        if not isinstance(name, str) or not 0 < len(name) <= 100:
            raise LeekConfigError(f"{where}: a job's name is a string of 1..100 characters")
        if (
            not isinstance(steps, list | tuple)
            or not 0 < len(steps) <= MAX_STEPS
            or not all(isinstance(s, str) for s in steps)
        ):
            raise LeekConfigError(
                f"{where} must be a list of 1..{MAX_STEPS} dotted paths to functions, e.g. "
                '["cats.jobs.fetch", "cats.jobs.store"]'
            )
        for path in steps:
            try:
                fn = import_string(path)
            except ImportError as exc:
                raise LeekConfigError(f"{where}: cannot import step {path!r}: {exc}") from None
            if not callable(fn):
                raise LeekConfigError(f"{where}: step {path!r} is not callable")
        jobs[name] = list(steps)
    return jobs


class JobSteps:
    """The configured jobs; gives a worker the call for a step and takes what it left."""

    def __init__(self, jobs: dict[str, list[str]], load: LoadStep) -> None:
        self.jobs = jobs
        self.load = load
        self._functions = {name: [import_string(p) for p in steps] for name, steps in jobs.items()}

    def call(self, job: Job) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
        """The step's function and its argument, the job with its saved workspace."""
        name, workspace = self.load(job.job_id, job.step)
        functions = self._functions.get(name)
        if functions is None:
            raise LeekConfigError(f"job {job.job_id}: no job named {name!r} in LEEK['jobs']")
        if not 0 <= job.step < len(functions):
            raise LeekConfigError(f"job {job.job_id} {name}: has no step {job.step + 1}")
        view = JobView(job.job_id, name, job.step, workspace, len(functions))
        return functions[job.step], (view,), {}

    def done(self, view: JobView) -> StepDone:
        """After a step succeeded: its workspace as JSON, and the step that comes next.

        A workspace that is not a dict of JSON values fails the step (TypeError).
        """
        if not isinstance(view.workspace, dict):
            raise TypeError(f"job.workspace must stay a dict, not {type(view.workspace).__name__}")
        text = json.dumps(view.workspace)
        steps = self.jobs[view.name]
        nxt = steps[view.step + 1] if view.step + 1 < len(steps) else None
        return StepDone(text, nxt)

    def first(self, name: str) -> str:
        """The dotted path of a job's first step; ``ValueError`` for an unknown job."""
        steps = self.jobs.get(name)
        if steps is None:
            known = ", ".join(sorted(self.jobs)) or "none are configured in settings.LEEK['jobs']"
            raise ValueError(f"no job named {name!r}; known jobs: {known}")
        return steps[0]
