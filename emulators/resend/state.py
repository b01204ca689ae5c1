"""In-memory data of the Resend emulator.

Everything lives in plain objects on ``app.state.emulator`` so tests can inspect and
seed it directly, without going through HTTP. Resend scopes contacts, segments,
properties and topics to the team an API key belongs to; the emulator treats each API
key as its own team (an :class:`Account`), which keeps two destinations configured
with different keys from ever seeing each other's data.

Concurrency: request handlers run on the server's event loop while CSV imports run in
worker threads, so every read or write of account data holds :attr:`ResendEmulatorState.lock`.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from emulators.kit import AccountEmulator, ApiError, ConfigOption, Decision, bearer_token, seconds

from .errors import DEFAULT_MESSAGES, RESEND_ERRORS
from .pagination import OrderedIndex
from .ratelimit import rate_limit_message

PropertyValue = str | int | float


def timestamp() -> str:
    """Now, in the format Resend uses for ``created_at`` (``2023-10-06 23:47:56.678+00``)."""
    now = datetime.now(UTC)
    return f"{now:%Y-%m-%d %H:%M:%S}.{now.microsecond // 1000:03d}+00"


def new_id() -> str:
    """A fresh object id; Resend ids are UUID v4 strings."""
    return str(uuid.uuid4())


@dataclass
class Contact:
    """One contact of an account (global, not per audience)."""

    id: str
    email: str
    created_at: str
    first_name: str | None = None
    last_name: str | None = None
    unsubscribed: bool = False
    properties: dict[str, PropertyValue] = field(default_factory=dict)
    segments: dict[str, str] = field(default_factory=dict)
    """Segment id -> when the contact was added (insertion ordered)."""
    topics: dict[str, str] = field(default_factory=dict)
    """Topic id -> ``opt_in``/``opt_out`` chosen explicitly for this contact."""


@dataclass
class Segment:
    """A named group of contacts; membership is stored on the contacts."""

    id: str
    name: str
    created_at: str
    filter: dict[str, Any] | None = None


@dataclass
class ContactProperty:
    """A custom contact field that must be declared before contacts may use it."""

    id: str
    key: str
    type: str
    created_at: str
    fallback_value: PropertyValue | None = None


@dataclass
class Topic:
    """A subscription topic contacts can opt in to or out of."""

    id: str
    name: str
    default_subscription: str
    visibility: str
    created_at: str
    description: str | None = None


@dataclass
class ContactImport:
    """A CSV import job and its progress counters."""

    id: str
    created_at: str
    status: str = "queued"
    completed_at: str | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: {"total": 0, "created": 0, "updated": 0, "skipped": 0, "failed": 0}
    )
    error: str | None = None
    """Why a ``failed`` import failed (not part of Resend's answer; for debugging)."""


@dataclass
class Account:
    """Everything one API key can see."""

    contacts: dict[str, Contact] = field(default_factory=dict)
    contact_by_email: dict[str, str] = field(default_factory=dict)
    contact_order: OrderedIndex = field(default_factory=OrderedIndex)
    segments: dict[str, Segment] = field(default_factory=dict)
    segment_order: OrderedIndex = field(default_factory=OrderedIndex)
    properties: dict[str, ContactProperty] = field(default_factory=dict)
    property_by_key: dict[str, str] = field(default_factory=dict)
    property_order: OrderedIndex = field(default_factory=OrderedIndex)
    topics: dict[str, Topic] = field(default_factory=dict)
    topic_order: OrderedIndex = field(default_factory=OrderedIndex)
    imports: dict[str, ContactImport] = field(default_factory=dict)
    import_order: OrderedIndex = field(default_factory=OrderedIndex)

    def find_contact(self, id_or_email: str) -> Contact | None:
        """Look a contact up by id or (case-insensitive) email, as Resend's paths allow."""
        contact = self.contacts.get(id_or_email)
        if contact is not None:
            return contact
        contact_id = self.contact_by_email.get(id_or_email.strip().lower())
        return self.contacts.get(contact_id) if contact_id else None

    def property_by(self, key: str) -> ContactProperty | None:
        """The declared property named ``key``, if any."""
        prop_id = self.property_by_key.get(key)
        return self.properties.get(prop_id) if prop_id else None

    def add_contact(self, contact: Contact) -> None:
        """Insert a new contact and index it."""
        self.contacts[contact.id] = contact
        self.contact_by_email[contact.email] = contact.id
        self.contact_order.add(contact.id)

    def remove_contact(self, contact: Contact) -> None:
        """Delete a contact and its index entries."""
        self.contacts.pop(contact.id, None)
        if self.contact_by_email.get(contact.email) == contact.id:
            del self.contact_by_email[contact.email]
        self.contact_order.remove(contact.id)

    def counts(self) -> dict[str, int]:
        """Sizes of each collection, for the ``/_emulator`` introspection endpoint."""
        return {
            "contacts": len(self.contacts),
            "segments": len(self.segments),
            "contact_properties": len(self.properties),
            "topics": len(self.topics),
            "contact_imports": len(self.imports),
        }


class ResendEmulatorState(AccountEmulator[Account]):
    """All mutable state of one emulator app: the kit's limiter, faults, stats and config
    plus the accounts and import workers."""

    def __init__(
        self,
        rate: float = 2.0,
        api_keys: set[str] | None = None,
        require_user_agent: bool = True,
        import_delay: float = 0.0,
    ) -> None:
        super().__init__(
            errors=RESEND_ERRORS,
            authenticate=self._authenticate,
            rate=rate,
            rate_limit_error=self._rate_limit_error,
            require_user_agent=require_user_agent,
            user_agent_error=ApiError(
                403,
                "missing_user_agent",
                "The `User-Agent` header is required. Add a User-Agent header to your request.",
            ),
            options=[ConfigOption.attribute(self, "import_delay", seconds)],
            new_account=Account,
            describe_account=Account.counts,
        )
        self.api_keys = set(api_keys) if api_keys is not None else None
        self.import_delay = import_delay
        """Seconds an import stays ``queued`` before it starts; lets tests watch it."""
        self.import_threads: list[threading.Thread] = []

    def key_is_valid(self, api_key: str) -> bool:
        """Whether ``api_key`` would be accepted by the emulated service."""
        if self.api_keys is None:
            return api_key.startswith("re_") and len(api_key) > 3
        return api_key in self.api_keys

    def _authenticate(self, request: Request) -> str:
        api_key = bearer_token(request.headers)
        if api_key is None:
            raise ApiError(401, "missing_api_key", DEFAULT_MESSAGES["missing_api_key"])
        if not self.key_is_valid(api_key):
            raise ApiError(403, "invalid_api_key", "API key is invalid")
        return api_key

    def _rate_limit_error(self, decision: Decision) -> ApiError:
        return ApiError(429, "rate_limit_exceeded", rate_limit_message(self.rate))

    def wait_for_imports(self, timeout: float = 30.0) -> None:
        """Join the import workers started so far (a test helper)."""
        for thread in list(self.import_threads):
            thread.join(timeout)
