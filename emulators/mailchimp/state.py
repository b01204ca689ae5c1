"""In-memory data of the Mailchimp emulator, and the emulator object that owns it.

Mailchimp scopes everything to the account an API key belongs to; the emulator treats each
API key as its own account, so two destinations configured with different keys never see
each other's lists. Plain dataclasses on ``app.state.emulator`` let tests seed and inspect
state directly; every read or write holds :attr:`MailchimpEmulator.lock`.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from emulators.kit import (
    ADMIN_PREFIX,
    RETRY_AFTER_ONLY,
    AccountEmulator,
    ApiError,
    ConfigOption,
    Decision,
    basic_credentials,
    seconds,
)

from .errors import DETAILS, MAILCHIMP_ERRORS

KEY_PATTERN = re.compile(r"^[0-9A-Za-z]+-(?P<dc>[a-z]+[0-9]+)$")
"""``<32 hex>-<datacenter>``: the datacenter suffix picks the API host (``us6`` ...)."""

MEMBER_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
"""Statuses a client may set; ``archived`` is only reached by ``DELETE``."""


def now() -> str:
    """Now as Mailchimp writes timestamps (ISO 8601 with offset, second precision)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def hex_id(length: int = 10) -> str:
    """A fresh lower-case hex id (list ids and ``unique_email_id`` are 10 hex digits)."""
    return secrets.token_hex((length + 1) // 2)[:length]


@dataclass
class MergeField:
    """An audience field: members' ``merge_fields`` may only use defined tags."""

    merge_id: int
    tag: str
    name: str
    type: str
    display_order: int
    required: bool = False
    default_value: str = ""
    public: bool = False
    help_text: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Member:
    """One contact of one list, keyed by its subscriber hash."""

    id: str
    email_address: str
    status: str
    unique_email_id: str
    contact_id: str
    web_id: int
    timestamp_signup: str
    last_changed: str
    email_type: str = "html"
    merge_fields: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    """Tag name -> when it was added (insertion ordered)."""
    language: str = ""
    vip: bool = False
    source: str = "API - Generic"
    timestamp_opt: str = ""


@dataclass
class MailingList:
    """An audience: its settings, merge fields, members and tag ids."""

    id: str
    web_id: int
    name: str
    contact: dict[str, Any]
    permission_reminder: str
    email_type_option: bool
    campaign_defaults: dict[str, Any]
    date_created: str
    merge_fields: dict[str, MergeField] = field(default_factory=dict)
    next_merge_id: int = 1
    members: dict[str, Member] = field(default_factory=dict)
    """Subscriber hash -> member, in the order members were first added."""
    tag_ids: dict[str, int] = field(default_factory=dict)
    forgotten: set[str] = field(default_factory=set)
    """Lower-cased emails that were permanently deleted (they cannot be re-imported)."""

    def add_merge_field(self, tag: str, name: str, type_: str, **extra: Any) -> MergeField:
        """Define a merge field with the next id and display order."""
        merge_field = MergeField(
            merge_id=self.next_merge_id,
            tag=tag,
            name=name,
            type=type_,
            display_order=len(self.merge_fields) + 2,  # EMAIL is display_order 1
            **extra,
        )
        self.next_merge_id += 1
        self.merge_fields[tag] = merge_field
        return merge_field

    def tag_id(self, name: str) -> int:
        """The list-wide id of tag ``name`` (tags are static segments), created on first use."""
        if name not in self.tag_ids:
            self.tag_ids[name] = 10000 + len(self.tag_ids) + 1
        return self.tag_ids[name]

    def counts(self) -> dict[str, int]:
        """Members per status, for the list's ``stats`` and ``/_emulator/accounts``."""
        out = {status: 0 for status in (*MEMBER_STATUSES, "archived")}
        for member in self.members.values():
            out[member.status] += 1
        return out


@dataclass
class Account:
    """Everything one API key can see."""

    lists: dict[str, MailingList] = field(default_factory=dict)
    next_web_id: int = 100000

    def web_id(self) -> int:
        """A fresh numeric ``web_id`` (Mailchimp's app URLs use these)."""
        self.next_web_id += 1
        return self.next_web_id


class MailchimpEmulator(AccountEmulator[Account]):
    """The kit's limiter, faults, stats and config plus Mailchimp's accounts.

    Rate limiting: Mailchimp publishes one limit, 10 simultaneous connections per account
    (the 11th gets 429 "Too Many Requests"), which is the kit's concurrency cap here. It
    publishes no per-second rate and no budget headers, so the window (``rate``) defaults to
    something generous and only ``Retry-After`` is sent on a 429 (decision: Mailchimp does not
    document a ``Retry-After``; sending one lets clients wait exactly, and clients that ignore
    it lose nothing).
    """

    def __init__(
        self,
        rate: float = 100.0,
        api_keys: set[str] | None = None,
        datacenter: str | None = None,
        concurrency: int = 10,
    ) -> None:
        super().__init__(
            errors=MAILCHIMP_ERRORS,
            authenticate=self._authenticate,
            rate=rate,
            concurrency=concurrency,
            rate_headers=RETRY_AFTER_ONLY,
            rate_limit_error=self._rate_limit_error,
            options=[
                ConfigOption.attribute(self, "latency", seconds),
                ConfigOption("datacenter", lambda: self.datacenter, self._set_datacenter),
            ],
            new_account=Account,
            describe_account=lambda account: {
                lst.id: lst.counts() for lst in account.lists.values()
            },
        )
        self.api_keys = set(api_keys) if api_keys is not None else None
        self.datacenter = datacenter
        """When set, keys of another datacenter are refused, like a request to the wrong host."""
        self.latency = 0.0
        """Seconds every API request takes; lets tests hold connections open."""

    def key_is_valid(self, api_key: str) -> bool:
        """Whether the emulated service would accept ``api_key`` on this host."""
        if self.api_keys is not None:
            return api_key in self.api_keys
        match = KEY_PATTERN.match(api_key)
        if match is None:
            return False
        return self.datacenter is None or match.group("dc") == self.datacenter

    def _authenticate(self, request: Request) -> str:
        """HTTP Basic with any user name and the API key as the password."""
        if not request.headers.get("authorization"):
            raise ApiError(401, "API Key Missing", DETAILS["API Key Missing"])
        credentials = basic_credentials(request.headers)
        if credentials is None or not self.key_is_valid(credentials[1]):
            raise ApiError(401, "API Key Invalid", DETAILS["API Key Invalid"])
        return credentials[1]

    def _rate_limit_error(self, decision: Decision) -> ApiError:
        if decision.concurrency:
            limit = self.limiter.concurrency
            detail = f"You have exceeded the limit of {limit} simultaneous connections."
        else:
            detail = f"You have exceeded the limit of {decision.limit} requests per window."
        return ApiError(429, "Too Many Requests", detail)

    def _set_datacenter(self, value: Any) -> None:
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError("`datacenter` must be a string such as 'us6', or null.")
        self.datacenter = value


class Latency:
    """ASGI middleware (inside the gate, so the connection slot is held) adding ``latency``."""

    def __init__(self, app: ASGIApp, emulator: MailchimpEmulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        delay = self.emulator.latency
        if delay > 0 and scope["type"] == "http" and not scope["path"].startswith(ADMIN_PREFIX):
            await asyncio.sleep(delay)
        await self.app(scope, receive, send)
