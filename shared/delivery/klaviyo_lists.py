"""Reading Klaviyo lists and their members: what makes a Klaviyo list a sync source.

``GET /api/lists/{id}`` names the list; ``GET /api/lists/{id}/profiles`` pages its members
(JSON:API, ``page[size]`` at most 100, the next page's ``page[cursor]`` in ``links.next``).
Requests go through the ``DeliveryClient`` (429 waits, 5xx backoff) with the same headers and
account rate limit as the Klaviyo destination connector, so reading a list and delivering to
the same account share one budget.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from shared.config import Settings
from shared.db.models import Destination
from shared.delivery.base import json_body
from shared.delivery.connector import DestinationError
from shared.delivery.http import DeliveryClient, RetryPolicy
from shared.delivery.klaviyo import DEFAULT_BASE_URL, REVISION, KlaviyoConnector
from shared.delivery.limiter import AccountLimiter, account_key
from shared.secrets import decrypt_json

PAGE_SIZE = 100  # the most Klaviyo gives per page of list profiles


class ListNotFound(DestinationError):
    """The list id names no list of this Klaviyo account."""


class ListReadRefused(DestinationError):
    """Klaviyo refused the request (credentials, revision, ...): its own words."""


@dataclass(frozen=True, slots=True)
class KlaviyoList:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ListMember:
    """A list member's profile, as the contact store takes it."""

    profile_id: str
    email: str | None
    phone_number: str | None
    external_id: str | None
    first_name: str | None
    last_name: str | None
    joined_at: str | None
    properties: dict[str, Any] = field(default_factory=dict)


class KlaviyoListReader:
    def __init__(self, client: DeliveryClient, revision: str = REVISION) -> None:
        self.client = client
        self.revision = revision

    @classmethod
    def for_destination(cls, destination: Destination, settings: Settings) -> KlaviyoListReader:
        """A reader with the destination's key, base URL, revision and account rate limit."""
        credentials = decrypt_json(destination.credentials_encrypted)
        config = destination.config
        base_url = KlaviyoConnector.base_url(config, credentials) or DEFAULT_BASE_URL
        client = DeliveryClient(
            base_url,
            KlaviyoConnector.auth_headers(credentials),
            RetryPolicy.from_settings(settings),
        )
        if settings.redis_url:
            secret = json.dumps(credentials, sort_keys=True)
            client.limiter = AccountLimiter(
                settings.redis_url,
                account_key("klaviyo", base_url, secret),
                rate=float(config.get("rate_limit") or KlaviyoConnector.default_rate),
                concurrency=KlaviyoConnector.max_concurrency,
            )
        return cls(client, str(config.get("revision") or REVISION))

    def close(self) -> None:
        self.client.close()

    def _get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.client.request(
            "GET", path, headers={"revision": self.revision}, params=params
        )
        if response.status_code == 404:
            raise ListNotFound(KlaviyoConnector.error_message(response))
        if not response.is_success:
            raise ListReadRefused(
                f"Klaviyo refused GET {path}: {KlaviyoConnector.error_message(response)}"
            )
        return json_body(response)

    def list_info(self, list_id: str) -> KlaviyoList:
        try:
            data = self._get(f"/api/lists/{quote(list_id, safe='')}").get("data") or {}
        except ListNotFound:
            raise ListNotFound(f"Klaviyo list {list_id} does not exist") from None
        name = (data.get("attributes") or {}).get("name")
        return KlaviyoList(str(data.get("id") or list_id), str(name or list_id))

    def members(self, list_id: str, page_size: int = PAGE_SIZE) -> Iterator[ListMember]:
        """Every member of the list, page by page, in the order Klaviyo gives them."""
        path = f"/api/lists/{quote(list_id, safe='')}/profiles"
        params: dict[str, Any] = {"page[size]": page_size}
        while True:
            try:
                document = self._get(path, params)
            except ListNotFound:
                raise ListNotFound(f"Klaviyo list {list_id} does not exist") from None
            for item in document.get("data") or []:
                yield _member(item)
            cursor = _next_cursor((document.get("links") or {}).get("next"))
            if cursor is None:
                return
            params = {"page[size]": page_size, "page[cursor]": cursor}


def _member(item: dict[str, Any]) -> ListMember:
    attributes = item.get("attributes") or {}

    def text(name: str) -> str | None:
        value = attributes.get(name)
        return str(value) if value not in (None, "") else None

    properties = attributes.get("properties")
    return ListMember(
        profile_id=str(item.get("id")),
        email=text("email"),
        phone_number=text("phone_number"),
        external_id=text("external_id"),
        first_name=text("first_name"),
        last_name=text("last_name"),
        joined_at=text("joined_group_at"),
        properties=dict(properties) if isinstance(properties, dict) else {},
    )


def _next_cursor(link: Any) -> str | None:
    if not isinstance(link, str) or not link:
        return None
    values = parse_qs(urlsplit(link).query).get("page[cursor]")
    return values[0] if values else None
