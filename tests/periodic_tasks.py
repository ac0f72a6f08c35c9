"""Periodic task functions for the subprocess tests; each leaves a line in LEEK_TEST_DIR."""

from __future__ import annotations

import os
from pathlib import Path

import leek


def _line(name: str) -> None:
    with open(Path(os.environ["LEEK_TEST_DIR"]) / name, "a") as f:
        f.write(f"{os.getpid()}\n")


def tick():
    _line("tick-runs")


def late():
    _line("late-runs")


@leek.periodic(every="1s")
def beat():
    _line("beat-runs")
