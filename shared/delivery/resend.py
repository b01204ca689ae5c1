"""Resend, on its current API: global ``/contacts`` with custom ``properties``, and segments.

Mapping: the destination fields ``email``, ``first_name``, ``last_name`` and ``unsubscribed`` are
contact attributes; every other destination field is a custom property. Resend only accepts
properties that were created first (``/contact-properties``), so the connector creates missing
ones (type ``number`` for numeric values, else ``string``) before it writes them.

Several apps can share one Resend account (seed 001): with ``app`` in the destination config,
every property is written as ``{app}_{name}``, and a removal clears this app's properties (and
its segment membership) instead of deleting a contact other apps may still use.

With ``segment_id`` in the destination config, contacts are added to that segment and a removal
takes them out of the segment only; without it (and without ``app``) a removal deletes the contact.

Paths: Resend writes one contact per request (2 requests/s by default), so large batches go
through a contact import (one CSV upload with ``on_conflict=upsert``, polled until done): 100,000
contacts in a few requests instead of 14 hours. An import reports only counts; if any row failed,
the batch is sent again record by record to learn which records failed and why.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from shared.delivery.base import HttpConnector, cursor_pages, json_body
from shared.delivery.connector import DestinationError, Outcome, Record
from shared.delivery.http import DeliveryClient, RetryPolicy

DEFAULT_BASE_URL = "https://api.resend.com"
CONTACT_FIELDS = frozenset({"email", "first_name", "last_name", "unsubscribed"})
IMPORT_FIELDS = frozenset({"email", "first_name", "last_name"})
PROPERTY_KEY = re.compile(r"^[A-Za-z0-9_]{1,50}$")
APP_ID = re.compile(r"^[A-Za-z0-9]{1,20}$")
BULK_THRESHOLD = 100  # records in one call from which a contact import beats per-record calls
IMPORT_TIMEOUT_SECONDS = 900.0


class ResendConnector(HttpConnector):
    type: ClassVar[str] = "resend"
    batch_size: ClassVar[int] = 5000
    default_base_url: ClassVar[str] = DEFAULT_BASE_URL
    default_rate: ClassVar[float] = 2.0

    def __init__(
        self,
        config: dict[str, Any],
        credentials: dict[str, Any],
        policy: RetryPolicy,
        client: DeliveryClient | None = None,
    ) -> None:
        super().__init__(config, credentials, policy, client)
        self.segment_id: str | None = config.get("segment_id") or None
        self.app: str | None = config.get("app") or None
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
        app = config.get("app")
        if app is not None and (not isinstance(app, str) or not APP_ID.match(app)):
            raise ValueError("config.app must be 1-20 letters or digits (it prefixes properties)")

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

    def upsert(self, records: Sequence[Record]) -> Iterator[Outcome]:
        self._ensure_properties(records)
        if len(records) >= BULK_THRESHOLD and all(
            IMPORT_FIELDS.issuperset(set(record.payload) & CONTACT_FIELDS) for record in records
        ):
            yield from self._import(records)
            return
        for record in records:
            self.took("per_record", 1)
            yield self._upsert_one(record)

    def remove(self, records: Sequence[Record]) -> Iterator[Outcome]:
        for record in records:
            self.took("per_record", 1)
            yield self._remove_one(record)

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
        if self.segment_id:
            path = f"/contacts/{ref}/segments/{quote(self.segment_id)}"
            response = self.client.request("DELETE", path)
            if response.status_code != 404 and not response.is_success:
                return self._outcome(record, response)
            if not self.app:
                return Outcome(record.key, True, record.destination_ref)
        if self.app:  # clear this app's properties; the contact belongs to every app
            cleared = {
                self._key(field): None for field in self.mapped_fields if self._is_property(field)
            }
            if not cleared:
                return Outcome(record.key, True, record.destination_ref)
            response = self.client.request(
                "PATCH", f"/contacts/{ref}", json={"properties": cleared}
            )
        else:
            response = self.client.request("DELETE", f"/contacts/{ref}")
        if response.status_code == 404:
            return Outcome(record.key, True, record.destination_ref)
        return self._outcome(record, response)

    def _import(self, records: Sequence[Record]) -> Iterator[Outcome]:
        """One contact import for the whole batch; per-record calls if any row failed."""
        sendable = [record for record in records if record.payload.get("email")]
        for record in records:
            if not record.payload.get("email"):
                yield Outcome(record.key, False, error="no email to send")
        counts = self._run_import(sendable) if sendable else {"failed": 0}
        if counts.get("failed"):
            for record in sendable:
                self.took("per_record", 1)
                yield self._upsert_one(record)
            return
        self.took("bulk", len(sendable))
        for record in sendable:
            yield Outcome(record.key, True, record.destination_ref or record.payload["email"])

    def _run_import(self, records: Sequence[Record]) -> dict[str, Any]:
        properties = sorted(
            {field for record in records for field in record.payload if self._is_property(field)}
        )
        names = sorted({field for record in records for field in record.payload} & IMPORT_FIELDS)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([*names, *(self._key(field) for field in properties)])
        for record in records:
            body = self._contact_body(record.payload, clearing=False)
            props = body.get("properties", {})
            writer.writerow(
                [body.get(name, "") for name in names]
                + [_cell(props.get(self._key(field))) for field in properties]
            )
        column_map: dict[str, Any] = {name: name for name in names}
        if properties:
            column_map["properties"] = {
                self._key(field): {
                    "column": self._key(field),
                    "type": (self._known_properties or {}).get(self._key(field), "string"),
                }
                for field in properties
            }
        form = {"column_map": json.dumps(column_map), "on_conflict": "upsert"}
        if self.segment_id:
            form["segments"] = json.dumps([{"id": self.segment_id}])
        response = self.client.request(
            "POST",
            "/contacts/imports",
            data=form,
            files={"file": ("contacts.csv", buffer.getvalue().encode(), "text/csv")},
        )
        self.raise_if_refused(response)
        if not response.is_success:
            return {"failed": len(records)}
        return self._wait_for_import(str(json_body(response)["id"]))

    def _wait_for_import(self, import_id: str) -> dict[str, Any]:
        """Poll the import until Resend says it is done, backing off up to 2 s between polls."""
        deadline = time.monotonic() + IMPORT_TIMEOUT_SECONDS
        pause = 0.1
        while time.monotonic() < deadline:
            response = self.client.request("GET", f"/contacts/imports/{quote(import_id)}")
            self.raise_if_refused(response)
            body = json_body(response)
            if body.get("status") == "completed":
                return dict(body.get("counts") or {})
            if body.get("status") == "failed":
                return {"failed": (body.get("counts") or {}).get("total", 1) or 1}
            self.client.sleep(pause)
            pause = min(pause * 2, 2.0)
        raise DestinationError(f"Resend import {import_id} did not finish within 15 minutes")

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
                key = self._key(field)
                properties[key] = self._property_value(key, value)
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

    def _is_property(self, field: str) -> bool:
        return field not in CONTACT_FIELDS

    def _key(self, field: str) -> str:
        """The property key on Resend: namespaced by app when several apps share the account."""
        return f"{self.app}_{field}" if self.app else field

    def _ensure_properties(self, records: Sequence[Record]) -> None:
        wanted: dict[str, Any] = {}
        for record in records:
            for field, value in record.payload.items():
                if self._is_property(field) and wanted.get(self._key(field)) is None:
                    wanted[self._key(field)] = value
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
        items = self.list_items(
            "/contact-properties", cursor_pages("data", 100), "Resend contact properties"
        )
        return {item["key"]: item.get("type", "string") for item in items}

    @staticmethod
    def error_message(response: httpx.Response) -> str:
        """Resend's own words: ``{"statusCode", "name", "message"}``."""
        body = json_body(response)
        name, message = body.get("name"), body.get("message")
        if message:
            return f"{name}: {message}" if name else str(message)
        return f"HTTP {response.status_code}"


def _cell(value: Any) -> Any:
    return "" if value is None else value
