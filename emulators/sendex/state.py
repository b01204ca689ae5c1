"""In-memory data and access rules of the Sendex emulator.

Decisions where the documentation is silent:

* **Keys and accounts.** Each API key is its own account (two keys never see each other's
  audiences). With ``api_keys=None`` any ``sk_live_...``/``sk_test_...`` key is a full-access
  key and any ``sk_send_...`` key is a sending-only key; ``api_keys={key: "full"|"sending"}``
  accepts exactly those keys. Every endpoint of the audiences API needs full access, so a
  sending-only key gets 403 ``forbidden`` everywhere here.
* **Rate limit.** The docs state none; the emulator defaults to 10 requests per second per
  key (``rate``), answering 429 ``rate_limit_exceeded`` with ``Retry-After`` (whole seconds)
  and no other rate headers, since Sendex publishes no budget headers.
* **Verified domains.** ``verified_domains=None`` treats every well-formed domain as verified;
  a list (also settable through ``/_emulator/config``) restricts audience creation to it.
* **Ids and times.** Ids are 24 lower-case hex digits like the documented examples (Mongo
  ObjectId style: a timestamp, random bytes and a counter); ``created_at`` is ISO 8601 UTC
  with milliseconds and ``Z``.
* **Emails** are matched case-insensitively and stored trimmed and lower-cased.
* **Order.** Audiences and contacts are listed oldest first, so ``offset`` paging is stable
  while nothing is inserted.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from emulators.kit import (
    RETRY_AFTER_ONLY,
    AccountEmulator,
    ApiError,
    ConfigOption,
    Decision,
    bearer_token,
)

from .errors import SENDEX_ERRORS

FULL = "full"
SENDING = "sending"
SCOPES = (FULL, SENDING)
DEFAULT_RATE = 10.0

_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))


def new_id() -> str:
    """A 24-hex-digit id: 4 bytes of seconds, 5 random bytes, a 3-byte counter."""
    return f"{int(time.time()):08x}{os.urandom(5).hex()}{next(_counter) % 0xFFFFFF:06x}"


def timestamp() -> str:
    """Now as Sendex writes it: ``2025-02-01T00:00:00.000Z``."""
    now = datetime.now(UTC)
    return f"{now:%Y-%m-%dT%H:%M:%S}.{now.microsecond // 1000:03d}Z"


@dataclass
class Contact:
    id: str
    email: str
    created_at: str
    first_name: str | None = None
    last_name: str | None = None
    subscribed: bool = True

    def render(self) -> dict[str, Any]:
        """The documented contact object; unset names are ``null``."""
        return {
            "id": self.id,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "subscribed": self.subscribed,
            "created_at": self.created_at,
        }


@dataclass
class Audience:
    id: str
    name: str
    domain: str
    created_at: str
    contacts: dict[str, Contact] = field(default_factory=dict)
    """Contact id -> contact, in insertion (creation) order."""
    by_email: dict[str, str] = field(default_factory=dict)

    def render(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "domain": self.domain,
            "contact_count": len(self.contacts),
            "created_at": self.created_at,
        }

    def add(self, contact: Contact) -> None:
        self.contacts[contact.id] = contact
        self.by_email[contact.email] = contact.id

    def remove(self, contact: Contact) -> None:
        self.contacts.pop(contact.id, None)
        self.by_email.pop(contact.email, None)

    def find_email(self, email: str) -> Contact | None:
        contact_id = self.by_email.get(email)
        return self.contacts.get(contact_id) if contact_id else None


@dataclass
class Account:
    """Everything one API key can see."""

    audiences: dict[str, Audience] = field(default_factory=dict)


class SendexEmulator(AccountEmulator[Account]):
    """The kit's limiter, faults, stats and config plus Sendex's accounts."""

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        api_keys: dict[str, str] | None = None,
        verified_domains: list[str] | None = None,
    ) -> None:
        super().__init__(
            errors=SENDEX_ERRORS,
            authenticate=self._authenticate,
            rate=rate,
            rate_headers=RETRY_AFTER_ONLY,
            rate_limit_error=self._rate_limit_error,
            emails_of=_emails_of,
            options=[
                ConfigOption("verified_domains", self._get_domains, self._set_domains),
            ],
            new_account=Account,
            describe_account=lambda account: {
                "audiences": len(account.audiences),
                "contacts": sum(len(a.contacts) for a in account.audiences.values()),
            },
        )
        if api_keys is not None and any(scope not in SCOPES for scope in api_keys.values()):
            raise ValueError(f"api_keys scopes must be one of {SCOPES}")
        self.api_keys = dict(api_keys) if api_keys is not None else None
        self.verified_domains: set[str] | None = None
        self._set_domains(verified_domains)

    def scope_of(self, key: str) -> str | None:
        """``"full"``, ``"sending"`` or ``None`` for a key Sendex does not know."""
        if self.api_keys is not None:
            return self.api_keys.get(key)
        for prefix in ("sk_live_", "sk_test_"):
            if key.startswith(prefix) and len(key) > len(prefix):
                return FULL
        if key.startswith("sk_send_") and len(key) > len("sk_send_"):
            return SENDING
        return None

    def is_verified(self, domain: str) -> bool:
        return self.verified_domains is None or domain in self.verified_domains

    def _authenticate(self, request: Request) -> str:
        key = bearer_token(request.headers)
        if key is None:
            raise ApiError(401, "unauthorized", "Missing API key. Send `Authorization: Bearer`.")
        scope = self.scope_of(key)
        if scope is None:
            raise ApiError(401, "unauthorized", "Invalid API key.")
        if scope != FULL:
            raise ApiError(403, "forbidden", "This endpoint requires a full access API key.")
        return key

    def _rate_limit_error(self, decision: Decision) -> ApiError:
        return ApiError(
            429,
            "rate_limit_exceeded",
            f"Too many requests. Retry after {decision.retry_after} second(s).",
        )

    def _get_domains(self) -> list[str] | None:
        return sorted(self.verified_domains) if self.verified_domains is not None else None

    def _set_domains(self, value: Any) -> None:
        if value is None:
            self.verified_domains = None
            return
        if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
            raise ValueError("`verified_domains` must be a list of domains or null.")
        self.verified_domains = {d.strip().lower() for d in value}


def _emails_of(route: str, body: Any) -> list[str]:
    """The address a contact upsert writes, for ``reject_emails`` fault rules."""
    if route.startswith("POST ") and route.endswith("/contacts") and isinstance(body, dict):
        email = body.get("email")
        return [email] if isinstance(email, str) else []
    return []
