"""Resend, on its current API: global ``/contacts`` with custom ``properties``, and segments.

Mapping: the destination fields ``email``, ``first_name``, ``last_name`` and ``unsubscribed`` are
contact attributes; every other destination field is a custom property. Resend only accepts
properties that were created first (``/contact-properties``), so the connector creates missing
ones (type ``number`` for numeric values, else ``string``) before it writes them.

With ``segment_id`` in the destination config, contacts are added to that segment and a removal
takes them out of the segment only; without it, a removal deletes the contact.

Resend has no multi-contact write besides CSV imports, so records go one request each; a batch is
the unit of bookkeeping (state is saved after each batch the service confirmed).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from shared.delivery.base import HttpConnector, json_body
from shared.delivery.connector import DestinationError, Outcome, Record
from shared.delivery.http import DeliveryClient, RetryPolicy

DEFAULT_BASE_URL = "https://api.resend.com"
CONTACT_FIELDS = frozenset({"email", "first_name", "last_name", "unsubscribed"})
PROPERTY_KEY = re.compile(r"^[A-Za-z0-9_]{1,50}$")


class ResendConnector(HttpConnector):
    type: ClassVar[str] = "resend"
    batch_size: ClassVar[int] = 10
    default_base_url: ClassVar[str] = DEFAULT_BASE_URL

    def __init__(
        self,
        config: dict[str, Any],
        credentials: dict[str, Any],
        policy: RetryPolicy,
        client: DeliveryClient | None = None,
    ) -> None:
        super().__init__(config, credentials, policy, client)
        self.segment_id: str | None = config.get("segment_id") or None
        self._known_properties: dict[str, str] | None = None

    @staticmethod
    def auth_headers(credentials: dict[str, Any]) -> dict[str, str]:
        return {"Authorization": f"Bearer {credentials['api_key']}"}

    @staticmethod
    def validate_config(config: dict[str, Any], credentials: dict[str, Any]) -> None:
        if not isinstance(credentials.get("api_key"), str) or not credentials["api_key"]:
            raise ValueError("credentials.api_key is required")
        segment = config.get("segment_id")
        if segment is not None and not isinstance(segment, str):
            raise ValueError("config.segment_id must be a string")

    @staticmethod
    def validate_mapping(destination_fields: Sequence[str]) -> None:
        if "email" not in destination_fields:
            raise ValueError("Resend identifies contacts by email: map a column to 'email'")
        for field in destination_fields:
            if field not in CONTACT_FIELDS and not PROPERTY_KEY.match(field):
                raise ValueError(
                    f"{field!r} is not a Resend contact field or a valid property key "
                    "(letters, digits and underscores, at most 50)"
                )

    def check(self) -> None:
        self.raise_if_refused(self.client.request("GET", "/contacts", params={"limit": 1}))
        if self.segment_id:
            response = self.client.request("GET", f"/segments/{quote(self.segment_id)}")
            if response.status_code == 404:
                raise DestinationError(f"Resend segment {self.segment_id} does not exist")
            self.raise_if_refused(response)

    def upsert(self, records: Sequence[Record]) -> list[Outcome]:
        self._ensure_properties(records)
        self.paths["per_record"] += len(records)
        return [self._upsert_one(record) for record in records]

    def remove(self, records: Sequence[Record]) -> list[Outcome]:
        self.paths["per_record"] += len(records)
        return [self._remove_one(record) for record in records]

    def _upsert_one(self, record: Record) -> Outcome:
        if not record.payload.get("email"):
            return Outcome(record.key, False, error="no email to send", status_code=None)
        if record.destination_ref:
            body = self._contact_body(record.payload, clearing=True)
            response = self.client.request(
                "PATCH", f"/contacts/{quote(record.destination_ref)}", json=body
            )
            if response.status_code != 404:
                return self._outcome(record, response)
        body = self._contact_body(record.payload, clearing=False)
        if self.segment_id:
            body["segments"] = [self.segment_id]
        return self._outcome(record, self.client.request("POST", "/contacts", json=body))

    def _remove_one(self, record: Record) -> Outcome:
        ref = quote(record.destination_ref or record.key)
        path = (
            f"/contacts/{ref}/segments/{quote(self.segment_id)}"
            if self.segment_id
            else (f"/contacts/{ref}")
        )
        response = self.client.request("DELETE", path)
        if response.status_code == 404:
            return Outcome(record.key, True, record.destination_ref)
        return self._outcome(record, response)

    def _outcome(self, record: Record, response: httpx.Response) -> Outcome:
        ref = json_body(response).get("id") if response.is_success else None
        return self.outcome(record, response, ref)

    def _contact_body(self, payload: dict[str, Any], clearing: bool) -> dict[str, Any]:
        """The contact as Resend takes it. Resend refuses null names: an update clears a name
        with an empty string, a create leaves it out."""
        body: dict[str, Any] = {}
        properties: dict[str, Any] = {}
        for field, value in payload.items():
            if field in CONTACT_FIELDS:
                if field == "unsubscribed":
                    if value is not None:
                        body[field] = bool(value)
                elif value is not None:
                    body[field] = str(value)
                elif clearing and field != "email":
                    body[field] = ""
            else:
                properties[field] = self._property_value(field, value)
        if properties:
            body["properties"] = properties
        return body

    def _property_value(self, key: str, value: Any) -> Any:
        kind = (self._known_properties or {}).get(key, "string")
        if value is None:
            return None
        if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) else str(value)

    def _ensure_properties(self, records: Sequence[Record]) -> None:
        wanted: dict[str, Any] = {}
        for record in records:
            for field, value in record.payload.items():
                if field not in CONTACT_FIELDS and wanted.get(field) is None:
                    wanted[field] = value
        if not wanted:
            return
        if self._known_properties is None:
            self._known_properties = self._list_properties()
        for key, sample in wanted.items():
            if key in self._known_properties:
                continue
            numeric = isinstance(sample, int | float) and not isinstance(sample, bool)
            kind = "number" if numeric else "string"
            response = self.client.request(
                "POST", "/contact-properties", json={"key": key, "type": kind}
            )
            self.raise_if_refused(response)
            if not response.is_success and response.status_code not in (409, 422):
                raise DestinationError(
                    f"Resend refused to create property {key!r}: {self.error_message(response)}"
                )
            self._known_properties[key] = kind

    def _list_properties(self) -> dict[str, str]:
        known: dict[str, str] = {}
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["after"] = after
            response = self.client.request("GET", "/contact-properties", params=params)
            self.raise_if_refused(response)
            if not response.is_success:
                reason = self.error_message(response)
                raise DestinationError(f"cannot list Resend properties: {reason}")
            page = json_body(response)
            items = page.get("data") or []
            for item in items:
                known[item["key"]] = item.get("type", "string")
            if not page.get("has_more") or not items:
                return known
            after = items[-1]["id"]

    @staticmethod
    def error_message(response: httpx.Response) -> str:
        """Resend's own words: ``{"statusCode", "name", "message"}``."""
        body = json_body(response)
        name, message = body.get("name"), body.get("message")
        if message:
            return f"{name}: {message}" if name else str(message)
        return f"HTTP {response.status_code}"
