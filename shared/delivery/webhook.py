"""Webhook: signed JSON batches POSTed to any URL (the protocol is ``docs/webhooks.md``).

Configuration: ``url`` (required, http or https), ``batch_size`` (records per POST, default
100, at most 1000) and optional extra ``headers`` (e.g. a static token the receiver wants);
credentials: ``secret``, the signing secret shared with the receiver.

Each POST carries one batch ``{"id", "sent_at", "operation", "records": [{"key", "payload"}]}``
signed with ``X-AudienceSync-Signature: v1=<hex HMAC-SHA256 of "{timestamp}.{body}">``. The
signature is computed in an httpx request hook, so every attempt (the shared DeliveryClient
retries 5xx and waits out 429s) is signed with a fresh timestamp: a batch retried for minutes
is never refused as stale. The body, and with it the batch id, stay the same across attempts,
which is what lets a receiver drop a batch it already processed.

Answers: 2xx delivers every record of the batch; 401/403 mean the receiver refuses our
signature (the run fails); any other 4xx, or a 3xx (redirects are not followed: a signed body
must not be replayed to another host), fails every record of the batch with the answer's text.

The executor hands over up to 1000 records per call (the ``batch_size`` ClassVar); the
connector splits them into POSTs of the configured size.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from shared.delivery.base import HttpConnector
from shared.delivery.connector import BatchRejected, DestinationError, Outcome, Record
from shared.delivery.http import DeliveryClient, RetryPolicy

TIMESTAMP_HEADER = "X-AudienceSync-Timestamp"
SIGNATURE_HEADER = "X-AudienceSync-Signature"
BATCH_ID_HEADER = "X-AudienceSync-Batch-Id"
DEFAULT_BATCH_SIZE = 100
MAX_BATCH_SIZE = 1000
MAX_ERROR_CHARS = 500
RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "user-agent", "transfer-encoding"}
)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=`` and the hex HMAC-SHA256 of ``"{timestamp}.{body}"`` keyed with ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signer(secret: str, clock: Callable[[], float] = time.time) -> Callable[[httpx.Request], None]:
    """An httpx ``request`` hook that (re)signs every attempt with the current time."""

    def sign(request: httpx.Request) -> None:
        timestamp = int(clock())
        request.headers[TIMESTAMP_HEADER] = str(timestamp)
        request.headers[SIGNATURE_HEADER] = signature(secret, timestamp, request.content)

    return sign


REJECTED_AS_A_WHOLE = frozenset({400, 409, 413, 422})


class WebhookConnector(HttpConnector):
    type: ClassVar[str] = "webhook"
    # The most a user may configure; the connector splits a call into config-sized POSTs.
    batch_size: ClassVar[int] = MAX_BATCH_SIZE
    default_base_url: ClassVar[str] = ""
    # POSTs per second to one receiver (origin + secret) unless ``config.rate_limit`` says
    # otherwise; a receiver that wants fewer answers 429 with Retry-After.
    default_rate: ClassVar[float] = 10.0

    def __init__(
        self,
        config: dict[str, Any],
        credentials: dict[str, Any],
        policy: RetryPolicy,
        client: DeliveryClient | None = None,
    ) -> None:
        if client is None:
            client = DeliveryClient(
                self.base_url(config, credentials),
                self.auth_headers(credentials),
                policy,
                event_hooks={"request": [signer(str(credentials["secret"]))]},
            )
        super().__init__(config, credentials, policy, client)
        self.url = str(config["url"])
        self.chunk_size = int(config.get("batch_size") or DEFAULT_BATCH_SIZE)
        self.extra_headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}

    @classmethod
    def base_url(cls, config: dict[str, Any], credentials: dict[str, Any]) -> str:
        """The URL's origin; requests go to the full configured URL, query string included."""
        parts = urlsplit(str(config["url"]))
        return f"{parts.scheme}://{parts.netloc}"

    @staticmethod
    def auth_headers(credentials: dict[str, Any]) -> dict[str, str]:
        """None: every request is signed instead (see :func:`signer`)."""
        return {}

    @staticmethod
    def validate_config(config: dict[str, Any], credentials: dict[str, Any]) -> None:
        secret = credentials.get("secret")
        if not isinstance(secret, str) or not secret.strip():
            raise ValueError("credentials.secret (the signing secret) is required")
        url = config.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("config.url must be an http(s) URL")
        if parts.username or parts.password:
            raise ValueError("config.url must not carry credentials; use config.headers")
        size = config.get("batch_size")
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE
        ):
            raise ValueError(f"config.batch_size must be an integer from 1 to {MAX_BATCH_SIZE}")
        headers = config.get("headers")
        if headers is None:
            return
        if not isinstance(headers, dict):
            raise ValueError("config.headers must be an object of header names to values")
        for name, value in headers.items():
            if not isinstance(value, str) or not name or not name.isascii():
                raise ValueError(f"config.headers[{name!r}] must be a string header value")
            if any(c in name for c in " :\r\n\t") or any(c in value for c in "\r\n"):
                raise ValueError(f"config.headers[{name!r}] is not a valid header")
            lowered = name.lower()
            if lowered in RESERVED_HEADERS or lowered.startswith("x-audiencesync-"):
                raise ValueError(f"config.headers cannot set {name!r}: the connector sets it")

    @staticmethod
    def validate_mapping(destination_fields: Sequence[str]) -> None:
        """Any field name: the payload is the receiver's to read."""

    @staticmethod
    def error_message(response: httpx.Response) -> str:
        """The receiver's own answer text, whitespace folded, cut at 500 characters (an error
        page can be long; a record's error keeps its start)."""
        text = " ".join(response.text.split())
        if not text:
            return f"HTTP {response.status_code}"
        if len(text) > MAX_ERROR_CHARS:
            return text[: MAX_ERROR_CHARS - 1] + "…"
        return text

    def check(self) -> None:
        """A signed ``ping`` batch with no records: the URL answers and accepts our signature."""
        response = self._post(self._batch("ping", []))
        self.raise_if_refused(response)
        if not response.is_success:
            raise DestinationError(
                f"the webhook answered {response.status_code}: {self.error_message(response)}"
            )

    def upsert(self, records: Sequence[Record]) -> Iterator[Outcome]:
        return self._deliver("upsert", records)

    def remove(self, records: Sequence[Record]) -> Iterator[Outcome]:
        return self._deliver("remove", records)

    def _deliver(self, operation: str, records: Sequence[Record]) -> Iterator[Outcome]:
        """One POST per configured batch; outcomes are yielded as each batch is answered, so
        the run saves its progress batch by batch."""
        for start in range(0, len(records), self.chunk_size):
            chunk = records[start : start + self.chunk_size]
            self.took("bulk", len(chunk))
            yield from self._send(operation, chunk)

    def _send(self, operation: str, records: Sequence[Record]) -> list[Outcome]:
        items = [{"key": record.key, "payload": record.payload} for record in records]
        response = self._post(self._batch(operation, items))
        self.raise_if_refused(response)
        if response.is_success:
            return [Outcome(r.key, True, r.destination_ref) for r in records]
        if response.is_redirect:
            where = response.headers.get("location", "elsewhere")
            error = f"redirected to {where}; webhooks do not follow redirects"
        else:
            error = self.error_message(response)
        if len(records) > 1 and response.status_code in REJECTED_AS_A_WHOLE:
            # One bad record spoils a receiver's batch: let the executor split it in halves
            # until the bad records are alone, so the good ones still get through.
            self.took("bulk", -len(records))
            raise BatchRejected(error, response.status_code)
        return [
            Outcome(r.key, False, error=error, status_code=response.status_code) for r in records
        ]

    @staticmethod
    def _batch(operation: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {
            "id": str(uuid.uuid4()),
            "sent_at": f"{now:%Y-%m-%dT%H:%M:%S}.{now.microsecond // 1000:03d}Z",
            "operation": operation,
            "records": items,
        }

    def _post(self, batch: dict[str, Any]) -> httpx.Response:
        body = json.dumps(batch, separators=(",", ":"), ensure_ascii=False, default=str)
        headers = {
            **self.extra_headers,
            "Content-Type": "application/json",
            BATCH_ID_HEADER: batch["id"],
        }
        return self.client.request("POST", self.url, content=body.encode(), headers=headers)
