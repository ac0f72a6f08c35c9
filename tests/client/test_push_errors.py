"""Whatever a push raises is a LeekError that says what to do."""

from __future__ import annotations

import pytest

import leek
from leek.protocol import Request

from .. import tasks
from ..helpers import SECRET


def test_a_push_over_the_frame_limit_is_a_leek_error_with_advice(server):
    with leek.Client(port=server.port, secret=SECRET, max_frame=4096) as c:
        with pytest.raises(leek.LeekError, match="frame limit.*pass large data by reference"):
            c.push(tasks.add, ("x" * 10_000, ""))
        assert c.push(tasks.add, (1, 2)) > 0  # the connection is still usable
        big = Request("ping", {"pad": "y" * 10_000})
        with pytest.raises(leek.LeekError, match="cannot send this request"):
            c._roundtrip([big])
        assert c.ping()["status"] == "ok"


def test_leek_max_frame_sets_the_clients_limit(django_db):
    from django.test import override_settings

    with override_settings(LEEK={"max_frame": 64 * 1024 * 1024}):
        assert leek.Client(port=1).max_frame == 64 * 1024 * 1024
    assert leek.Client(port=1).max_frame == 16 * 1024 * 1024
