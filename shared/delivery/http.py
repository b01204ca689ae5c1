"""The one HTTP delivery loop every connector uses.

- 429: wait what the service says (``retry-after``, else ``ratelimit-reset``), then send again.
  A wait is not a failed attempt: only the total time spent waiting is bounded.
- 5xx, timeouts, connection errors: exponential backoff with jitter (tenacity), bounded attempts,
  then ``DestinationUnavailable`` so the executor can mark the records failed for the next run.
- When a response says no requests are left in the window, the next request waits for the
  window to reset instead of collecting a 429 first.
- Anything else (2xx, 4xx) goes back to the connector, which reads the service's own message.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from shared.config import Settings
from shared.delivery.connector import DestinationUnavailable
from shared.delivery.limiter import AccountLimiter
from shared.logs import log_event

logger = logging.getLogger(__name__)
USER_AGENT = "audiencesync/0.1 (+https://github.com/audiencesync/audiencesync)"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    backoff_initial: float = 0.5
    backoff_max: float = 20.0
    max_rate_limit_wait: float = 300.0
    timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_attempts=settings.delivery_max_attempts,
            backoff_initial=settings.backoff_initial_seconds,
            backoff_max=settings.backoff_max_seconds,
            max_rate_limit_wait=settings.max_rate_limit_wait_seconds,
            timeout=settings.http_timeout_seconds,
        )


class _Transient(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DeliveryClient:
    """An httpx client that waits on 429s and retries transient failures.

    Safe to share between the threads of one run (httpx's client is; the counters are locked).
    """

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        policy: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep,
        event_hooks: dict[str, list[Callable[..., Any]]] | None = None,
    ) -> None:
        self.policy = policy
        self.sleep = sleep
        self.request_count = 0
        self.rate_limited_count = 0
        self._count_lock = threading.Lock()
        self._in_flight: threading.BoundedSemaphore | None = None
        # The account's shared limiter (set by the registry when Redis is configured).
        self.limiter: AccountLimiter | None = None
        self._not_before = 0.0
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"User-Agent": USER_AGENT, **headers},
            timeout=policy.timeout,
            event_hooks=event_hooks or {},
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        retrying = Retrying(
            stop=stop_after_attempt(self.policy.max_attempts),
            # Exponential from backoff_initial, capped, plus up to a second of jitter.
            wait=wait_exponential(
                multiplier=self.policy.backoff_initial, max=self.policy.backoff_max
            )
            + wait_random(0, min(1.0, self.policy.backoff_max)),
            retry=retry_if_exception_type(_Transient),
            sleep=self.sleep,
            reraise=False,
        )
        try:
            return retrying(self._send_until_not_limited, method, path, **kwargs)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            reason = last.reason if isinstance(last, _Transient) else str(last)
            raise DestinationUnavailable(
                f"{method} {path.split('?')[0]} failed {self.policy.max_attempts} times: {reason}"
            ) from None

    def _send_until_not_limited(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        waited = 0.0
        while True:
            pause = self._not_before - time.monotonic()
            if pause > 0:
                self.sleep(pause)
            response = self._send_once(method, path, **kwargs)
            self._remember_window(response)
            if response.status_code != 429:
                return response
            with self._count_lock:
                self.rate_limited_count += 1
            delay = retry_delay(response)
            waited += delay
            if waited > self.policy.max_rate_limit_wait:
                raise _Transient(f"rate limited for more than {self.policy.max_rate_limit_wait}s")
            log_event(logger, "destination.rate_limited", wait_seconds=delay)
            self.sleep(delay)

    def cap_in_flight(self, connections: int) -> None:
        """Never more than ``connections`` requests of this client on their way at once. A run
        may have more threads than that (they build and record batches meanwhile); they queue
        here, in the process, before asking the account's shared limiter for a slot."""
        self._in_flight = threading.BoundedSemaphore(connections)

    def _send_once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self._in_flight or contextlib.nullcontext():
            return self._send_admitted(method, path, **kwargs)

    def _send_admitted(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        admission = self.limiter.acquire(method, path) if self.limiter is not None else None
        with self._count_lock:
            self.request_count += 1
        response: httpx.Response | None = None
        try:
            response = self._client.request(method, path, **kwargs)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise _Transient(f"{type(exc).__name__}") from exc
        finally:
            if self.limiter is not None and admission is not None:
                self.limiter.release(admission, response)
        if response.status_code >= 500:
            raise _Transient(f"HTTP {response.status_code}")
        return response

    def _remember_window(self, response: httpx.Response) -> None:
        """Without a shared limiter, pace by the service's own counters. With one, the limiter
        already spaces requests at the account's rate; waiting out a reset rounded up to whole
        seconds on top of it would throw a third of Resend's budget away."""
        if self.limiter is not None:
            return
        remaining = response.headers.get("ratelimit-remaining")
        reset = response.headers.get("ratelimit-reset")
        if remaining is not None and reset is not None and _number(remaining) == 0:
            self._not_before = time.monotonic() + max(_number(reset) or 0.0, 0.0)

    def close(self) -> None:
        self._client.close()


def retry_delay(response: httpx.Response) -> float:
    for header in ("retry-after", "ratelimit-reset"):
        value = _number(response.headers.get(header))
        if value is not None and value >= 0:
            return max(value, 0.05)
    return 1.0


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
