"""The base every HTTP destination connector extends.

It owns what is the same for all services: building the ``DeliveryClient`` (429 waits, 5xx
backoff), counting requests, closing. A subclass declares what differs: its base URL, how it
authenticates, its batch size, its paths and payloads, and how to read its errors.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from shared.delivery.connector import DestinationError, Outcome, Record
from shared.delivery.http import DeliveryClient, RetryPolicy
from shared.delivery.limiter import RouteLimit


class HttpConnector(ABC):
    type: ClassVar[str]
    # The most records one upsert()/remove() call receives. A connector with a bulk endpoint
    # declares the bulk size and picks per-record calls itself when a call brings few records.
    batch_size: ClassVar[int] = 100
    default_base_url: ClassVar[str]
    # What the service allows one account by default (config ``rate_limit`` overrides the rate).
    default_rate: ClassVar[float] = 10.0
    # The service's cap on requests in flight per account, if it has one (Mailchimp: 10). A run
    # then sends that many batches at once; config ``max_connections`` may ask for fewer.
    max_concurrency: ClassVar[int | None] = None
    # Endpoints the service limits on their own instead of against the account's rate.
    route_limits: ClassVar[tuple[RouteLimit, ...]] = ()
    refused_statuses: ClassVar[frozenset[int]] = frozenset({401, 403})

    def __init__(
        self,
        config: dict[str, Any],
        credentials: dict[str, Any],
        policy: RetryPolicy,
        client: DeliveryClient | None = None,
    ) -> None:
        self.config = config
        # Records delivered per path ("per_record", "bulk"); the run records the mix.
        self.paths: Counter[str] = Counter()
        self._paths_lock = threading.Lock()
        # The destination fields the sync maps (set by prepare); removals may need them.
        self.mapped_fields: list[str] = []
        self.client = client or DeliveryClient(
            self.base_url(config, credentials), self.auth_headers(credentials), policy
        )
        if self.max_concurrency:
            self.client.cap_in_flight(self.connections)

    @classmethod
    def connections_for(cls, config: dict[str, Any]) -> int:
        """Requests this account may have in flight: the service's cap, or fewer when the
        destination says so (another tool shares the account)."""
        if not cls.max_concurrency:
            return 1
        wanted = config.get("max_connections")
        return min(cls.max_concurrency, int(wanted)) if wanted else cls.max_concurrency

    @property
    def connections(self) -> int:
        return self.connections_for(self.config)

    def took(self, path: str, records: int) -> None:
        """Count records delivered through ``path`` (batches may run in parallel threads)."""
        with self._paths_lock:
            self.paths[path] += records

    @classmethod
    def base_url(cls, config: dict[str, Any], credentials: dict[str, Any]) -> str:
        return str(config.get("base_url") or cls.default_base_url)

    @staticmethod
    @abstractmethod
    def auth_headers(credentials: dict[str, Any]) -> dict[str, str]:
        """Headers that authenticate every request (never logged)."""

    @staticmethod
    def validate_config(config: dict[str, Any], credentials: dict[str, Any]) -> None:
        """Raise ``ValueError`` with a user-facing reason when the settings cannot work."""

    @staticmethod
    def validate_mapping(destination_fields: Sequence[str]) -> None:
        """Raise ``ValueError`` naming any destination field the service cannot accept."""

    @staticmethod
    @abstractmethod
    def error_message(response: httpx.Response) -> str:
        """The service's own words for an error answer."""

    @abstractmethod
    def check(self) -> None: ...

    @abstractmethod
    def upsert(self, records: Sequence[Record]) -> Iterable[Outcome]:
        """One outcome per record; may yield them as they come (see the executor's saving)."""

    @abstractmethod
    def remove(self, records: Sequence[Record]) -> Iterable[Outcome]: ...

    def prepare(self, destination_fields: Sequence[str]) -> None:
        """Called once per run, before any delivery, with the sync's destination fields."""
        self.mapped_fields = list(destination_fields)

    @property
    def request_count(self) -> int:
        return self.client.request_count

    def close(self) -> None:
        self.client.close()

    def raise_if_refused(self, response: httpx.Response) -> None:
        """Credentials the service refuses make the whole destination unusable."""
        if response.status_code in self.refused_statuses:
            raise DestinationError(
                f"{self.type} refused the credentials: {self.error_message(response)}"
            )

    def list_items(self, path: str, pagination: Pagination, what: str) -> Iterator[dict[str, Any]]:
        """Every item of a paged listing: the one pagination loop all connectors share."""
        params: dict[str, Any] | None = pagination.first
        while params is not None:
            response = self.client.request("GET", path, params=params)
            self.raise_if_refused(response)
            if not response.is_success:
                raise DestinationError(f"cannot list {what}: {self.error_message(response)}")
            page = json_body(response)
            items = list(page.get(pagination.items) or [])
            yield from items
            params = pagination.next_params(page, items, params)

    def outcome(self, record: Record, response: httpx.Response, ref: str | None = None) -> Outcome:
        """One record's result from one response: refused credentials stop the run, any other
        4xx fails this record with the service's message."""
        self.raise_if_refused(response)
        if response.is_success:
            return Outcome(record.key, True, ref or record.destination_ref)
        return Outcome(
            record.key, False, error=self.error_message(response), status_code=response.status_code
        )


NextParams = Callable[[dict[str, Any], list[dict[str, Any]], dict[str, Any]], dict[str, Any] | None]


@dataclass(frozen=True)
class Pagination:
    """How a service pages a listing: the first page's query, where the items are in a page,
    and the query of the next page (``None`` when there is none)."""

    first: dict[str, Any]
    items: str
    next_params: NextParams


def offset_pages(
    items: str, page_size: int, total: str, size_param: str = "limit", offset_param: str = "offset"
) -> Pagination:
    """``limit``/``offset`` paging with a total count (Sendex, Mailchimp's ``count``)."""

    def next_params(
        page: dict[str, Any], got: list[dict[str, Any]], params: dict[str, Any]
    ) -> dict[str, Any] | None:
        offset = int(params[offset_param]) + len(got)
        if not got or offset >= int(page.get(total) or 0):
            return None
        return {**params, offset_param: offset}

    return Pagination({size_param: page_size, offset_param: 0}, items, next_params)


def cursor_pages(items: str, page_size: int, has_more: str = "has_more") -> Pagination:
    """``limit``/``after=<last id>`` paging with a ``has_more`` flag (Resend)."""

    def next_params(
        page: dict[str, Any], got: list[dict[str, Any]], params: dict[str, Any]
    ) -> dict[str, Any] | None:
        if not page.get(has_more) or not got:
            return None
        return {**params, "after": got[-1]["id"]}

    return Pagination({"limit": page_size}, items, next_params)


def json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
