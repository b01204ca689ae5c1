"""A doorbell per workspace: how many "push the pending events" tasks are queued, not started.

Every accepted event used to publish a task. At a few hundred events a second the workers then
spent most of their time claiming nothing, because the first task of a burst takes every event
committed before it starts. A task only needs publishing when fewer than ``queued`` tasks are
waiting to start: one that has not started yet will see every event committed before it
claims. So whoever commits an event rings (a counter goes up, unless ``queued`` are already
waiting) and publishes only when it rang; a task answers (the counter goes down) as it starts,
before it claims anything.

The counter is a hint; the event rows are the promise. Lost (Redis restarted), it starts again
from zero and costs a few extra tasks. Stuck high (a message lost with the broker), it expires
``ttl_seconds`` after the last ring, and the outbox sweeper publishes without ringing anyway.
When Redis cannot be reached, everyone publishes, as before.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import redis

from shared.logs import log_event

logger = logging.getLogger(__name__)

# KEYS[1] = counter; ARGV = most queued, ttl seconds. 1: publish, 0: enough are queued.
_RING = """
local n = redis.call('INCR', KEYS[1])
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# KEYS[1] = counter. Never below zero: tasks the sweeper published never rang.
_ANSWER = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"""


class Doorbell:
    def __init__(self, redis_url: str, queued: int = 2, ttl_seconds: int = 10) -> None:
        self.client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.queued = queued
        self.ttl_seconds = ttl_seconds
        self._ring = self.client.register_script(_RING)
        self._answer = self.client.register_script(_ANSWER)

    def ring(self, workspace_id: str) -> bool:
        """Whether the caller should publish a task (it rang), or enough are queued."""
        try:
            return bool(self._ring(keys=[_key(workspace_id)], args=[self.queued, self.ttl_seconds]))
        except redis.RedisError as exc:
            log_event(logger, "doorbell.unavailable", level=logging.WARNING, error=str(exc))
            return True

    def answer(self, workspace_id: str) -> None:
        """A task starts (call before claiming), or a publish that rang failed."""
        try:
            self._answer(keys=[_key(workspace_id)])
        except redis.RedisError as exc:
            log_event(logger, "doorbell.unavailable", level=logging.WARNING, error=str(exc))


def _key(workspace_id: str) -> str:
    return f"audiencesync:events:doorbell:{workspace_id}"


@lru_cache(maxsize=4)
def doorbell_for(redis_url: str, queued: int) -> Doorbell:
    """One doorbell (and its connection pool) per process."""
    return Doorbell(redis_url, queued)
