"""The receiver's state: the signing secret, accepted batches, and test switches.

Built on the kit's :class:`~emulators.kit.Emulator` so the shared ``/_emulator`` faults (500s,
429s, ``reject_emails`` failing a whole batch), rate limit and stats work as for any service.
The receiver has no accounts: every request is the one account ``"receiver"``; what protects
it is the signature, checked by the handler (the gate cannot read bodies before faults).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from emulators.kit import RETRY_AFTER_ONLY, ConfigOption, Emulator, ErrorFormat, positive_number

from .signature import DEFAULT_TOLERANCE

ACCOUNT = "receiver"
DEFAULT_SECRET = "whsec_test_secret"
DEFAULT_RATE = 1000.0


def _error_body(error: Any) -> dict[str, Any]:
    return {"error": error.code, "message": error.message}


RECEIVER_ERRORS = ErrorFormat(
    render_body=_error_body,
    codes={
        400: "invalid_body",
        401: "unauthorized",
        404: "not_found",
        405: "method_not_allowed",
        422: "rejected",
        429: "rate_limited",
        500: "internal_error",
        502: "bad_gateway",
        503: "service_unavailable",
    },
)
"""The receiver's own answers (a real receiver may answer anything: the connector reads only
the status and, for a failed batch, the text)."""


@dataclass
class Batch:
    """One accepted batch, as ``GET /batches`` shows it."""

    id: str
    operation: str
    sent_at: str
    records: list[dict[str, Any]]
    received_at: float
    headers: dict[str, str]
    query: str
    deliveries: int = 1
    """How many signed POSTs carried this batch id (more than 1 after a retry)."""

    def render(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "operation": self.operation,
            "sent_at": self.sent_at,
            "records": self.records,
            "received_at": self.received_at,
            "headers": self.headers,
            "query": self.query,
            "deliveries": self.deliveries,
        }


@dataclass
class Received:
    batches: dict[str, Batch] = field(default_factory=dict)
    pings: int = 0


class WebhookReceiver(Emulator):
    """Secret, tolerance and stored batches; ``fail_after_store`` makes the next N accepted
    batches answer 500 *after* being stored, like a receiver that crashed after committing,
    so tests can prove that a retried batch id is recognised."""

    def __init__(
        self,
        secret: str = DEFAULT_SECRET,
        rate: float = DEFAULT_RATE,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> None:
        super().__init__(
            errors=RECEIVER_ERRORS,
            authenticate=lambda request: ACCOUNT,
            rate=rate,
            rate_headers=RETRY_AFTER_ONLY,
            emails_of=_emails_of,
            options=[
                ConfigOption("secret", lambda: self.secret, self._set_secret),
                ConfigOption.attribute(self, "tolerance_seconds", positive_number, "tolerance"),
                ConfigOption("fail_after_store", lambda: self.fail_after_store, self._set_fail),
            ],
            on_reset=self._drop,
            describe_accounts=self._describe,
        )
        self.secret = secret
        self.tolerance = tolerance
        self.fail_after_store = 0
        self.received = Received()
        self.clock = time.time

    def _set_secret(self, value: Any) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError("`secret` must be a non-empty string.")
        self.secret = value

    def _set_fail(self, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("`fail_after_store` must be a non-negative integer.")
        self.fail_after_store = value

    def _drop(self) -> None:
        self.received = Received()
        self.fail_after_store = 0

    def _describe(self) -> dict[str, Any]:
        batches = self.received.batches.values()
        return {
            ACCOUNT: {
                "batches": len(batches),
                "records": sum(len(b.records) for b in batches),
                "pings": self.received.pings,
            }
        }


def _emails_of(route: str, body: Any) -> list[str]:
    """Addresses in a batch, so a ``reject_emails`` fault fails the whole batch (422)."""
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        return []
    emails: list[str] = []
    for record in body["records"]:
        if isinstance(record, dict):
            payload = record.get("payload")
            email = payload.get("email") if isinstance(payload, dict) else None
            candidate = email if isinstance(email, str) else record.get("key")
            if isinstance(candidate, str):
                emails.append(candidate)
    return emails


def receiver_of(request: Request) -> WebhookReceiver:
    receiver: WebhookReceiver = request.app.state.emulator
    return receiver
