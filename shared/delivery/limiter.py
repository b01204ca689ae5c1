"""One rate limiter per destination account, shared by every worker process and run.

Celery's ``rate_limit`` is per worker; a service's limit is per account. So the budget lives in
Redis and is taken atomically by Lua scripts that use Redis' own clock (no drift between
worker machines):

- a GCRA (generic cell rate algorithm) spaces requests at the account's rate, with a small
  burst;
- a semaphore caps requests in flight per account (Mailchimp allows 10 connections); each slot
  expires, so a killed worker cannot hold one forever;
- what the service itself says wins: a 429's ``retry-after`` blocks the whole account for every
  worker until then;
- a service that limits each endpoint on its own (Klaviyo: a burst and a steady rate per
  endpoint) declares ``RouteLimit``s; each such route has its own GCRA and its own 429 block, so
  a slow endpoint never holds back a fast one. Routes without one share the account's rate.

One limiter may serve several threads of one run at once (a run sends batches in parallel to a
service that allows several connections): what one request holds is returned to it as an
``Admission``, never kept on the limiter.

If Redis cannot be reached the limiter steps aside (logged): requests still honour the service's
own 429s through ``DeliveryClient``, so nothing is lost, only politeness.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import redis

from shared.logs import log_event

logger = logging.getLogger(__name__)

# One turn: KEYS[1] = blocked-until (ms), KEYS[2] = GCRA theoretical arrival time (ms);
# ARGV = interval ms, burst. Returns 0 when admitted, else the milliseconds to wait: what is
# left of a block the service asked for, or the GCRA's spacing. One round trip per request.
_TURN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local blocked = tonumber(redis.call('GET', KEYS[1]) or 0)
if blocked > now then return blocked - now end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[2]) or now)
if tat < now then tat = now end
local allow_at = tat - interval * burst
if now < allow_at then return allow_at - now end
local new_tat = tat + interval
redis.call('SET', KEYS[2], new_tat, 'PX', math.ceil(new_tat - now + interval * (burst + 1)))
return 0
"""

# Semaphore: KEYS[1] = zset of slot -> expiry (ms); ARGV = slot id, cap, ttl ms.
_ACQUIRE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  return 1
end
return 0
"""

# Block: KEYS[1] = blocked-until; ARGV[1] = ms to block (never shortens a longer block).
_BLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or 0)
if now + wait > current then redis.call('SET', KEYS[1], now + wait, 'PX', wait) end
return 0
"""


def account_key(kind: str, base_url: str, secret: str) -> str:
    """Who the service counts requests against, without keeping the secret anywhere."""
    digest = hashlib.sha256(f"{kind}\0{base_url}\0{secret}".encode()).hexdigest()[:24]
    return f"audiencesync:limit:{kind}:{digest}"


@dataclass(frozen=True)
class RouteLimit:
    """A limit the service puts on one endpoint instead of on the whole account.

    ``path`` is the endpoint's template as the service documents it; a ``{name}`` stands for
    one path segment. ``rate`` is the steady rate in requests per second (the one that holds
    over minutes); ``burst`` how many may go at once after a quiet spell.
    """

    method: str
    path: str
    rate: float
    burst: int = 1
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = re.split(r"\{[^/{}]+\}", self.path)
        regex = "[^/]+".join(re.escape(part) for part in parts)
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))

    @property
    def bucket(self) -> str:
        return f"{self.method.upper()} {self.path}"

    def matches(self, method: str, path: str) -> bool:
        return method.upper() == self.method.upper() and bool(self.pattern.match(path))


@dataclass(frozen=True)
class Admission:
    """What one request holds between ``acquire`` and ``release``."""

    bucket: str
    slot: str | None = None


@dataclass(frozen=True)
class _Bucket:
    name: str
    interval_ms: int
    burst: int


class AccountLimiter:
    def __init__(
        self,
        redis_url: str,
        key: str,
        rate: float,
        concurrency: int | None = None,
        burst: int = 1,
        routes: Sequence[RouteLimit] = (),
        slot_ttl_seconds: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        self.key = key
        self.account = _Bucket("account", _interval_ms(rate), max(0, burst - 1))
        self.routes = tuple(routes)
        self.concurrency = concurrency
        self.slot_ttl_ms = int(slot_ttl_seconds * 1000)
        self.sleep = sleep
        self._turn_script = self.client.register_script(_TURN)
        self._acquire_slot = self.client.register_script(_ACQUIRE_SLOT)
        self._block = self.client.register_script(_BLOCK)
        self._disabled = False

    def acquire(self, method: str = "", path: str = "") -> Admission:
        """Wait until this account (or this endpoint of it) may send one more request, then
        take the turn. Give what it returns back to ``release``."""
        bucket = self._bucket(method, path)
        if self._disabled:
            return Admission(bucket.name)
        try:
            slot = self._take_slot() if self.concurrency else None
            try:
                while (wait_ms := self._turn(bucket)) > 0:
                    self._pause(wait_ms / 1000)
            except BaseException:
                self.release(Admission(bucket.name, slot), None)
                raise
            return Admission(bucket.name, slot)
        except redis.RedisError as exc:
            self._step_aside(exc)
            return Admission(bucket.name)

    def release(self, admission: Admission, response: httpx.Response | None) -> None:
        """Give the in-flight slot back and pass on what the service said about its limits."""
        if self._disabled:
            return
        try:
            if admission.slot is not None:
                self.client.zrem(f"{self.key}:slots", admission.slot)
            if response is not None:
                block = _service_block_seconds(response)
                if block > 0:
                    blocked = self._key(admission.bucket, "blocked")
                    self._block(keys=[blocked], args=[int(block * 1000)])
        except redis.RedisError as exc:
            self._step_aside(exc)

    def _bucket(self, method: str, path: str) -> _Bucket:
        route_path = httpx.URL(path).path if path else ""
        for route in self.routes:
            if route.matches(method, route_path):
                return _Bucket(route.bucket, _interval_ms(route.rate), max(0, route.burst - 1))
        return self.account

    def _key(self, bucket: str, what: str) -> str:
        if bucket == self.account.name:
            return f"{self.key}:{what}"
        return f"{self.key}:route:{hashlib.sha1(bucket.encode()).hexdigest()[:12]}:{what}"

    def _turn(self, bucket: _Bucket) -> int:
        keys = [self._key(bucket.name, "blocked"), self._key(bucket.name, "gcra")]
        return int(self._turn_script(keys=keys, args=[bucket.interval_ms, bucket.burst]))

    def _take_slot(self) -> str:
        slot = uuid.uuid4().hex
        pause = 0.01
        while not self._acquire_slot(
            keys=[f"{self.key}:slots"], args=[slot, self.concurrency or 1, self.slot_ttl_ms]
        ):
            self._pause(pause)
            pause = min(pause * 2, 0.25)
        return slot

    def _pause(self, seconds: float) -> None:
        self.sleep(seconds)

    def _step_aside(self, exc: Exception) -> None:
        self._disabled = True
        log_event(logger, "limiter.unavailable", level=logging.WARNING, error=type(exc).__name__)


def _interval_ms(rate: float) -> int:
    return max(1, round(1000 / rate))


def _service_block_seconds(response: httpx.Response) -> float:
    """How long the service asked everyone on this account to hold off: only a 429 says so.
    (An exhausted ``ratelimit-remaining`` is normal at full speed; its reset is rounded up to
    whole seconds, so waiting it out would slow every worker below the rate it is allowed.)"""
    if response.status_code == 429:
        for header in ("retry-after", "ratelimit-reset"):
            value = _number(response.headers.get(header))
            if value is not None:
                return value
        return 1.0
    return 0.0


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
