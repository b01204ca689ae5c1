"""Sendex: contacts in one audience of a sending domain (seed document 004).

Configuration (``config``):

* ``audience_id``: the audience to keep in sync; or, instead,
* ``domain`` + ``audience_name``: the audience of that name on that (verified) domain. It is
  looked up once per run and **created when missing**, on the first upsert; a run that only
  removes never creates it (nothing can be in an audience that does not exist). When several
  audiences share the name, the oldest is used. Giving both forms is refused as ambiguous.
* ``remove_mode``: ``"delete"`` (default: a member who leaves is deleted from the audience, so
  a mirror sync keeps the audience equal to ours) or ``"unsubscribe"`` (the contact stays,
  with ``subscribed: false``, keeping its history at Sendex).

Credentials: ``api_key``, a **full access** key (Sendex refuses sending-only keys on every
audience endpoint with 403, which fails the run like any refused credential).

Mapping: destination fields ``email`` (required), ``first_name``, ``last_name`` and
``subscribed``; Sendex has no custom fields. ``subscribed`` is only sent when mapped, so
Sendex's own unsubscribes are never overridden by a sync that does not mean to; with
``remove_mode: "unsubscribe"`` a member who comes back stays unsubscribed unless
``subscribed`` is mapped.

Delivery: Sendex has no bulk endpoint, so each record is one request: ``POST .../contacts``
(an upsert by email) for upserts, ``DELETE`` or ``PATCH`` of the contact for removals. A batch
is the unit of bookkeeping. Names the source no longer has are cleared with ``""`` on an
update (Sendex documents names as strings, so no ``null`` is ever sent).

Removals use the contact id we stored (``destination_ref``); without one (a remove-mode sync
that only noted who was there) or when that id is gone, the contact is found by email in one
paged listing of the audience per run (200 per page).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from shared.delivery.base import HttpConnector, json_body, offset_pages
from shared.delivery.connector import DestinationError, Outcome, Record
from shared.delivery.http import DeliveryClient, RetryPolicy

DEFAULT_BASE_URL = "https://sendexapi.com"
API = "/api/v1"
FIELDS = frozenset({"email", "first_name", "last_name", "subscribed"})
NAME_FIELDS = ("first_name", "last_name")
REMOVE_MODES = ("delete", "unsubscribe")
PAGE_SIZE = 200  # Sendex's largest page
TRUE_WORDS = frozenset({"true", "yes", "1", "subscribed"})
FALSE_WORDS = frozenset({"false", "no", "0", "unsubscribed"})


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


class SendexConnector(HttpConnector):
    type: ClassVar[str] = "sendex"
    # Per-record requests only; 25 keeps a batch (the unit saved to our state) a few seconds
    # long at Sendex-like rates.
    batch_size: ClassVar[int] = 25
    default_base_url: ClassVar[str] = DEFAULT_BASE_URL
    # Sendex documents no rate limit; 10 requests/s per key is our assumption (the emulator's
    # default too). ``config.rate_limit`` overrides it; any 429 is waited out regardless.
    default_rate: ClassVar[float] = 10.0

    def __init__(
        self,
        config: dict[str, Any],
        credentials: dict[str, Any],
        policy: RetryPolicy,
        client: DeliveryClient | None = None,
    ) -> None:
        super().__init__(config, credentials, policy, client)
        self.audience_id: str | None = _text(config.get("audience_id"))
        self.domain: str | None = _text(config.get("domain"))
        self.audience_name: str | None = _text(config.get("audience_name"))
        self.remove_mode: str = config.get("remove_mode") or "delete"
        self._ids_by_email: dict[str, str] | None = None

    @staticmethod
    def auth_headers(credentials: dict[str, Any]) -> dict[str, str]:
        return {"Authorization": f"Bearer {credentials['api_key']}"}

    @staticmethod
    def validate_config(config: dict[str, Any], credentials: dict[str, Any]) -> None:
        if _text(credentials.get("api_key")) is None:
            raise ValueError("credentials.api_key is required (a full access Sendex key)")
        for key in ("audience_id", "domain", "audience_name", "remove_mode"):
            if config.get(key) is not None and not isinstance(config[key], str):
                raise ValueError(f"config.{key} must be a string")
        by_id = _text(config.get("audience_id")) is not None
        by_name = _text(config.get("domain")) is not None or (
            _text(config.get("audience_name")) is not None
        )
        if by_id and by_name:
            raise ValueError("give config.audience_id or config.domain + audience_name, not both")
        if not by_id:
            domain, name = _text(config.get("domain")), _text(config.get("audience_name"))
            if domain is None or name is None:
                raise ValueError(
                    "config.audience_id is required, or config.domain and config.audience_name"
                )
            if "." not in domain or "/" in domain or " " in domain:
                raise ValueError("config.domain must be a domain name such as example.com")
        mode = config.get("remove_mode")
        if mode is not None and mode not in REMOVE_MODES:
            raise ValueError(f"config.remove_mode must be one of {', '.join(REMOVE_MODES)}")

    @staticmethod
    def validate_mapping(destination_fields: Sequence[str]) -> None:
        if "email" not in destination_fields:
            raise ValueError("Sendex identifies contacts by email: map a column to 'email'")
        unknown = sorted(set(destination_fields) - FIELDS)
        if unknown:
            raise ValueError(
                f"Sendex contacts have no field {', '.join(map(repr, unknown))}; "
                f"the fields are {', '.join(sorted(FIELDS))}"
            )

    @staticmethod
    def error_message(response: httpx.Response) -> str:
        """Sendex's own words: ``{"error": code, "message": text}``."""
        body = json_body(response)
        code, message = body.get("error"), body.get("message")
        if message:
            return f"{code}: {message}" if code else str(message)
        return f"HTTP {response.status_code}"

    def check(self) -> None:
        if self.audience_id:
            response = self.client.request("GET", f"{API}/audiences/{quote(self.audience_id)}")
            self.raise_if_refused(response)
            if response.status_code == 404:
                raise DestinationError(f"Sendex audience {self.audience_id} does not exist")
        else:
            response = self._list_audiences()
        if not response.is_success:
            raise DestinationError(f"Sendex refused the check: {self.error_message(response)}")

    def upsert(self, records: Sequence[Record]) -> list[Outcome]:
        audience = self._audience(create=True)
        assert audience is not None
        self.took("per_record", len(records))
        return [self._upsert_one(audience, record) for record in records]

    def remove(self, records: Sequence[Record]) -> list[Outcome]:
        audience = self._audience(create=False)
        if audience is None:  # the audience was never created: nobody is in it
            return [Outcome(record.key, True, record.destination_ref) for record in records]
        self.took("per_record", len(records))
        return [self._remove_one(audience, record) for record in records]

    # --- upsert ---------------------------------------------------------------------

    def _upsert_one(self, audience: str, record: Record) -> Outcome:
        email = _text(record.payload.get("email"))
        if email is None:
            return Outcome(record.key, False, error="no email to send")
        body = self._contact_body(record, email)
        response = self.client.request("POST", f"{API}/audiences/{audience}/contacts", json=body)
        if response.status_code == 404:  # the only thing a contact POST can miss
            raise DestinationError(f"Sendex audience {audience} does not exist")
        if not response.is_success:
            return self.outcome(record, response)
        ref = json_body(response).get("id")
        if isinstance(ref, str):
            if self._ids_by_email is not None:
                self._ids_by_email[email.lower()] = ref
            if record.destination_ref and record.destination_ref != ref:
                # The member's email changed (a source keyed by something else): the contact
                # made for the old address leaves as a removal would take it out.
                self.raise_if_refused(self._remove_contact(audience, record.destination_ref))
        return self.outcome(record, response, ref if isinstance(ref, str) else None)

    def _contact_body(self, record: Record, email: str) -> dict[str, Any]:
        body: dict[str, Any] = {"email": email}
        for field in NAME_FIELDS:
            if field not in record.payload:
                continue
            value = record.payload[field]
            if value is not None and str(value).strip():
                body[field] = str(value)
            elif record.destination_ref:  # delivered before: clear what the source cleared
                body[field] = ""
        subscribed = record.payload.get("subscribed")
        if subscribed is not None and not (isinstance(subscribed, str) and not subscribed.strip()):
            body["subscribed"] = _subscribed(subscribed)
        return body

    # --- remove ---------------------------------------------------------------------

    def _remove_one(self, audience: str, record: Record) -> Outcome:
        tried: str | None = None
        if record.destination_ref:
            response = self._remove_contact(audience, record.destination_ref)
            if response.status_code != 404:
                return self.outcome(record, response)
            tried = record.destination_ref
        found = self._contact_id(audience, record.key)
        if found is None or found == tried:  # not in the audience: nothing left to remove
            return Outcome(record.key, True, record.destination_ref)
        response = self._remove_contact(audience, found)
        if response.status_code == 404:
            return Outcome(record.key, True, record.destination_ref)
        return self.outcome(record, response, found)

    def _remove_contact(self, audience: str, contact_id: str) -> httpx.Response:
        if self.remove_mode == "unsubscribe":
            path = f"{API}/audiences/{audience}/contacts/{quote(contact_id)}"
            return self.client.request("PATCH", path, json={"subscribed": False})
        return self._delete(audience, contact_id)

    def _delete(self, audience: str, contact_id: str) -> httpx.Response:
        path = f"{API}/audiences/{audience}/contacts/{quote(contact_id)}"
        response = self.client.request("DELETE", path)
        self.raise_if_refused(response)
        if response.is_success and self._ids_by_email is not None:
            for email, known in list(self._ids_by_email.items()):
                if known == contact_id:
                    del self._ids_by_email[email]
        return response

    def _contact_id(self, audience: str, key: str) -> str | None:
        """The id of the contact with email ``key``, from one paged listing per run."""
        if self._ids_by_email is None:
            items = self.list_items(
                f"{API}/audiences/{audience}/contacts",
                offset_pages("data", PAGE_SIZE, "total"),
                "the Sendex audience",
            )
            self._ids_by_email = {str(item["email"]).lower(): str(item["id"]) for item in items}
        return self._ids_by_email.get(key.strip().lower())

    # --- audience -------------------------------------------------------------------

    def _list_audiences(self) -> httpx.Response:
        response = self.client.request("GET", f"{API}/audiences", params={"domain": self.domain})
        self.raise_if_refused(response)
        return response

    def _audience(self, create: bool) -> str | None:
        """The configured audience's id; by domain + name, found (or created) once."""
        if self.audience_id:
            return self.audience_id
        response = self._list_audiences()
        if not response.is_success:
            reason = self.error_message(response)
            raise DestinationError(f"cannot list Sendex audiences of {self.domain}: {reason}")
        for audience in json_body(response).get("data") or []:
            if audience.get("name") == self.audience_name:
                self.audience_id = str(audience["id"])
                return self.audience_id
        if not create:
            return None
        response = self.client.request(
            "POST", f"{API}/audiences", json={"name": self.audience_name, "domain": self.domain}
        )
        self.raise_if_refused(response)
        if not response.is_success:
            reason = self.error_message(response)
            raise DestinationError(f"cannot create the Sendex audience: {reason}")
        self.audience_id = str(json_body(response)["id"])
        return self.audience_id


def _subscribed(value: Any) -> Any:
    """A boolean from the usual spellings; anything else goes as is, for Sendex to judge."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    return value
