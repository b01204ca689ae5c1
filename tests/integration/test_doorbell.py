"""The events doorbell in real Redis: a few rings per burst, never below zero, and a bell that
cannot reach Redis lets everyone publish."""

from __future__ import annotations

import uuid

from shared.doorbell import Doorbell
from tests.conftest import REDIS_URL


def test_rings_until_enough_tasks_are_queued_then_again_as_they_start() -> None:
    bell, workspace = Doorbell(REDIS_URL, queued=2), uuid.uuid4().hex
    assert [bell.ring(workspace) for _ in range(5)] == [True, True, False, False, False]
    bell.answer(workspace)  # one task started: the next event needs a new one
    assert [bell.ring(workspace) for _ in range(2)] == [True, False]
    assert bell.ring(uuid.uuid4().hex), "workspaces have a bell each"


def test_tasks_that_never_rang_do_not_push_the_count_below_zero() -> None:
    bell, workspace = Doorbell(REDIS_URL, queued=1), uuid.uuid4().hex
    for _ in range(3):  # the sweeper's tasks publish without ringing
        bell.answer(workspace)
    assert [bell.ring(workspace) for _ in range(2)] == [True, False]


def test_a_stuck_count_expires() -> None:
    bell, workspace = Doorbell(REDIS_URL, queued=1, ttl_seconds=1), uuid.uuid4().hex
    assert bell.ring(workspace)
    ttl = bell.client.pttl(f"audiencesync:events:doorbell:{workspace}")
    assert 0 < ttl <= 1000, "a message lost with the broker holds publishing back a second"


def test_without_redis_everyone_publishes() -> None:
    bell = Doorbell("redis://127.0.0.1:1/0", queued=1)
    assert all(bell.ring("w") for _ in range(3))
    bell.answer("w")  # and nothing raises
