"""What every destination connector provides, and the records and outcomes it trades in.

A connector knows one service's paths, payloads and errors. Retries, rate-limit waits and
backoff live in ``shared.delivery.http`` once for all connectors; run bookkeeping lives in the
executor. A connector knows nothing of Celery or of our database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol


@dataclass(frozen=True, slots=True)
class Record:
    key: str
    payload: dict[str, Any]
    destination_ref: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The service's answer for one record. ``error`` carries the service's own message."""

    key: str
    ok: bool
    destination_ref: str | None = None
    error: str = ""
    status_code: int | None = None


class DestinationError(Exception):
    """The destination cannot be used at all (bad credentials, missing segment): fail the run."""


class BatchRejected(Exception):
    """The service refused a whole multi-record request (one bad record spoils the batch).

    The executor splits the batch in halves and sends each again until the bad records are
    alone, so the good ones are delivered and each bad one fails with the service's message.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class DestinationUnavailable(Exception):
    """The destination kept failing (5xx, timeouts) past the retry budget."""


class Connector(Protocol):
    type: ClassVar[str]
    batch_size: ClassVar[int]

    @property
    def request_count(self) -> int: ...

    @property
    def connections(self) -> int:
        """How many requests the connector may have in flight: a run sends that many batches
        at once. ``upsert`` and ``remove`` must then be safe to call from several threads."""

    @staticmethod
    def validate_mapping(destination_fields: Sequence[str]) -> None:
        """Raise ``ValueError`` naming any field the service cannot accept."""

    def prepare(self, destination_fields: Sequence[str]) -> None:
        """Called once per run with the sync's destination fields, before any delivery."""

    def check(self) -> None:
        """Check the credentials against the service; raise ``DestinationError`` if refused."""

    def upsert(self, records: Sequence[Record]) -> Iterable[Outcome]:
        """Create or update these records; one outcome per record, in any order. May yield
        outcomes as they come, so that a long call's progress is saved as it goes."""

    def remove(self, records: Sequence[Record]) -> Iterable[Outcome]:
        """Remove what this sync delivered for these records."""

    def close(self) -> None: ...
