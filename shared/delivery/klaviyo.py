"""Klaviyo, on its JSON:API (revision ``2026-07-15`` unless ``config.revision`` says otherwise).

Settings: ``config.list_id`` (required: the list the audience is kept in), ``config.subscribe``
(bool: also give/withdraw email marketing consent), ``config.revision`` (optional);
``credentials.api_key`` is a private key (``pk_...``).

Mapping: ``email``, ``phone_number``, ``external_id``, ``first_name``, ``last_name``,
``organization``, ``title`` and ``locale`` are profile attributes; every other destination
field is a custom property. A ``None`` attribute is sent as ``null`` (Klaviyo clears it); a
``None`` property is removed with ``meta.patch_properties.unset``. A profile is identified by
its Klaviyo id once known, else by its identifiers (at least one must be mapped).

Paths:

* Fewer than 10 records: ``POST /api/profile-import`` per record (its answer carries the
  profile id), then one ``POST /api/lists/{id}/relationships/profiles`` for all of them.
* More: one bulk import job (``POST /api/profile-bulk-import-jobs``, up to 10,000 profiles,
  with the list relationship so imported profiles join the list), polled with backoff under
  a deadline until ``complete`` (or ``cancelled``); the job's import errors
  (``.../import-errors``) fail exactly the records they point at, with Klaviyo's detail.
  Bulk imports do not return profile ids, so those records keep the ref they had.
* Removal takes profiles out of the list (``DELETE .../relationships/profiles``, up to
  1,000 ids a call) and never deletes a profile. Records without a known id are looked up
  among the list's members by email (the payload's, else the member key when it is an
  email, as for the built-in contact store) or phone; one that is not a member is already
  removed.
* With ``subscribe``: after an upsert the profiles with an email get consent through
  ``POST /api/profile-subscription-bulk-create-jobs`` (with the list); a removal first
  withdraws it through ``...-bulk-delete-jobs`` with the list, only for current members (a
  non-member would be unsubscribed globally, as the endpoint warns), then leaves the list.

A multi-profile request Klaviyo refuses because of one profile (``source.pointer``
``/data/attributes/profiles/data/<i>/...``) fails that record alone and is sent again
without it. Rate limits and 5xx are the ``DeliveryClient``'s business.

Limits: Klaviyo limits each endpoint on its own, per account, with a burst per second and a
steady rate per minute (its spec's ``x-klaviyo-ratelimit``; tiers S 3/s 60/m, M 10/s 150/m,
L 75/s 750/m). ``route_limits`` lists the endpoints this connector calls at their steady rate,
so list relationships (M) never slow profile imports (L) down. ``config.rate_limit`` paces the
endpoints not listed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from shared.delivery.base import HttpConnector, json_body
from shared.delivery.connector import DestinationError, Outcome, Record
from shared.delivery.http import DeliveryClient, RetryPolicy
from shared.delivery.limiter import RouteLimit

DEFAULT_BASE_URL = "https://a.klaviyo.com"
REVISION = "2026-07-15"
MEDIA_TYPE = "application/vnd.api+json"
IDENTIFIERS = ("email", "phone_number", "external_id")
ATTRIBUTES = frozenset({*IDENTIFIERS, "first_name", "last_name", "organization", "title", "locale"})
BULK_MAX = 10_000
PER_RECORD_BELOW = 10
LIST_MEMBERS_MAX = 1000
SUBSCRIBE_MAX = 1000
UNSUBSCRIBE_MAX = 100
LOOKUP_MAX = 100
REVISION_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
PROFILE_POINTER = re.compile(r"^/data/attributes/profiles/data/(\d+)(?:/|$)")

Sender = Callable[[list[dict[str, Any]]], httpx.Response]
TIER_M, TIER_L = 150, 750  # steady requests per minute


def _steady(method: str, path: str, per_minute: int) -> RouteLimit:
    """Paced one request short of the minute's budget, so that no minute of Klaviyo's sliding
    window ever holds more than it allows (a GCRA admits one extra at the window's edge)."""
    return RouteLimit(method, path, (per_minute - 1) / 60)


class KlaviyoConnector(HttpConnector):
    type: ClassVar[str] = "klaviyo"
    batch_size: ClassVar[int] = BULK_MAX
    default_base_url: ClassVar[str] = DEFAULT_BASE_URL
    route_limits: ClassVar[tuple[RouteLimit, ...]] = (
        _steady("POST", "/api/profile-import", TIER_L),
        _steady("POST", "/api/profile-bulk-import-jobs", TIER_M),
        _steady("GET", "/api/profile-bulk-import-jobs/{job_id}", TIER_M),
        _steady("GET", "/api/profile-bulk-import-jobs/{id}/import-errors", TIER_M),
        _steady("POST", "/api/profile-subscription-bulk-create-jobs", TIER_L),
        _steady("POST", "/api/profile-subscription-bulk-delete-jobs", TIER_L),
        _steady("POST", "/api/lists/{id}/relationships/profiles", TIER_M),
        _steady("DELETE", "/api/lists/{id}/relationships/profiles", TIER_M),
        _steady("GET", "/api/lists/{id}/profiles", TIER_L),
        _steady("GET", "/api/lists/{id}", TIER_L),
    )
    job_timeout: float = 900.0
    """Seconds a bulk import job may take before its records fail (they are sent again)."""
    poll_initial: float = 0.2
    poll_max: float = 5.0

    def __init__(
        self,
        config: dict[str, Any],
        credentials: dict[str, Any],
        policy: RetryPolicy,
        client: DeliveryClient | None = None,
    ) -> None:
        super().__init__(config, credentials, policy, client)
        self.list_id = str(config["list_id"])
        self.subscribe = bool(config.get("subscribe", False))
        self.revision = str(config.get("revision") or REVISION)

    @staticmethod
    def auth_headers(credentials: dict[str, Any]) -> dict[str, str]:
        return {"Authorization": f"Klaviyo-API-Key {credentials['api_key']}", "Accept": MEDIA_TYPE}

    @staticmethod
    def validate_config(config: dict[str, Any], credentials: dict[str, Any]) -> None:
        key = credentials.get("api_key")
        if not isinstance(key, str) or not key.startswith("pk_"):
            raise ValueError("credentials.api_key must be a Klaviyo private API key (pk_...)")
        list_id = config.get("list_id")
        if not isinstance(list_id, str) or not list_id.strip():
            raise ValueError("config.list_id is required: the id of the Klaviyo list to sync")
        if not isinstance(config.get("subscribe", False), bool):
            raise ValueError("config.subscribe must be true or false")
        revision = config.get("revision")
        if revision is not None and (
            not isinstance(revision, str) or not REVISION_FORMAT.match(revision)
        ):
            raise ValueError("config.revision must be a Klaviyo API revision such as 2026-07-15")

    @staticmethod
    def validate_mapping(destination_fields: Sequence[str]) -> None:
        if not any(field in IDENTIFIERS for field in destination_fields):
            raise ValueError(
                "Klaviyo identifies profiles by email, phone_number or external_id: "
                "map a column to at least one of them"
            )
        for field in destination_fields:
            if not field.strip():
                raise ValueError("destination field names cannot be empty")

    @staticmethod
    def error_message(response: httpx.Response) -> str:
        """Klaviyo's own words: the ``detail`` (else ``title``) of each JSON:API error."""
        errors = json_body(response).get("errors")
        if isinstance(errors, list):
            words = [
                str(e.get("detail") or e.get("title"))
                for e in errors
                if isinstance(e, dict) and (e.get("detail") or e.get("title"))
            ]
            if words:
                return "; ".join(words)
        return f"HTTP {response.status_code}"

    # -- requests -----------------------------------------------------------------------

    def _request(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        headers = {"revision": self.revision}
        content = None
        if body is not None:
            headers["Content-Type"] = MEDIA_TYPE
            content = json.dumps(body, default=str).encode()
        return self.client.request(method, path, headers=headers, content=content, params=params)

    def _list_path(self, suffix: str = "") -> str:
        return f"/api/lists/{quote(self.list_id, safe='')}{suffix}"

    def _fail_unless_ok(self, response: httpx.Response, what: str) -> None:
        """Errors that make the destination unusable: refused key, missing list, bad revision."""
        self.raise_if_refused(response)
        if response.status_code == 404 and "list" in what:
            raise DestinationError(f"Klaviyo list {self.list_id} does not exist")
        if response.status_code == 400 and _pointer(response).startswith(
            "/data/relationships/list"
        ):
            raise DestinationError(
                f"Klaviyo refused list {self.list_id}: {self.error_message(response)}"
            )
        if response.status_code == 400 and _parameter(response) == "revision":
            raise DestinationError(f"Klaviyo refused the revision: {self.error_message(response)}")

    def check(self) -> None:
        response = self._request("GET", self._list_path())
        self._fail_unless_ok(response, "list")
        if not response.is_success:
            raise DestinationError(f"Klaviyo refused the request: {self.error_message(response)}")

    # -- upsert -------------------------------------------------------------------------

    def upsert(self, records: Sequence[Record]) -> list[Outcome]:
        outcomes: dict[str, Outcome] = {}
        sendable: list[Record] = []
        for record in records:
            if any(_present(record.payload.get(kind)) for kind in IDENTIFIERS):
                sendable.append(record)
            else:
                outcomes[record.key] = Outcome(
                    record.key, False, error="no email, phone_number or external_id to send"
                )
        if len(sendable) < PER_RECORD_BELOW:
            self.took("per_record", len(sendable))
            outcomes.update(self._upsert_each(sendable))
        else:
            for start in range(0, len(sendable), BULK_MAX):
                chunk = sendable[start : start + BULK_MAX]
                self.took("bulk", len(chunk))
                outcomes.update(self._upsert_bulk(chunk))
        if self.subscribe:
            done = [r for r in sendable if outcomes[r.key].ok and _present(r.payload.get("email"))]
            outcomes.update(self._subscribe(done, outcomes))
        return [outcomes[record.key] for record in records]

    def _upsert_each(self, records: Sequence[Record]) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        for record in records:
            response = self._request("POST", "/api/profile-import", self._import_body(record))
            if response.status_code == 404 and record.destination_ref:
                # The profile was deleted in Klaviyo: create it again from its identifiers.
                fresh = Record(record.key, record.payload, None)
                response = self._request("POST", "/api/profile-import", self._import_body(fresh))
            ref = _data(response).get("id") if response.is_success else None
            outcomes[record.key] = self.outcome(record, response, ref)
        added = [r for r in records if outcomes[r.key].ok and outcomes[r.key].destination_ref]
        for start in range(0, len(added), LIST_MEMBERS_MAX):
            chunk = added[start : start + LIST_MEMBERS_MAX]
            ids = [{"type": "profile", "id": outcomes[r.key].destination_ref} for r in chunk]
            response = self._request(
                "POST", self._list_path("/relationships/profiles"), {"data": ids}
            )
            self._fail_unless_ok(response, "list")
            if not response.is_success:
                for record in chunk:
                    outcomes[record.key] = self.outcome(record, response)
        return outcomes

    def _import_body(self, record: Record) -> dict[str, Any]:
        return {"data": self._profile(record)}

    def _profile(self, record: Record) -> dict[str, Any]:
        """The profile resource object for a record (see the module docstring)."""
        attributes: dict[str, Any] = {}
        properties: dict[str, Any] = {}
        unset: list[str] = []
        for field, value in record.payload.items():
            if field in ATTRIBUTES:
                if _present(value):
                    attributes[field] = value if isinstance(value, str) else str(value)
                elif field not in IDENTIFIERS or record.destination_ref:
                    attributes[field] = None
            elif value is None:
                unset.append(field)
            else:
                properties[field] = value
        if properties:
            attributes["properties"] = properties
        profile: dict[str, Any] = {"type": "profile", "attributes": attributes}
        if record.destination_ref:
            profile["id"] = record.destination_ref
        if unset:
            profile["meta"] = {"patch_properties": {"unset": unset}}
        return profile

    def _upsert_bulk(self, records: Sequence[Record]) -> dict[str, Outcome]:
        relationships = {"lists": {"data": [{"type": "list", "id": self.list_id}]}}

        def send(profiles: list[dict[str, Any]]) -> httpx.Response:
            body = {
                "data": {
                    "type": "profile-bulk-import-job",
                    "attributes": {"profiles": {"data": profiles}},
                    "relationships": relationships,
                }
            }
            return self._request("POST", "/api/profile-bulk-import-jobs", body)

        outcomes, accepted, response = self._send_isolating(
            list(records), [self._profile(r) for r in records], send
        )
        if response is None or not accepted:
            return outcomes
        job_id = str(_data(response).get("id"))
        job, problem = self._wait_for_job(job_id)
        if job is None:
            for record in accepted:
                outcomes[record.key] = Outcome(record.key, False, error=problem)
            return outcomes
        errors = self._import_errors(job_id) if job.get("failed_count") else []
        failed = _match_errors(accepted, errors)
        retry_fresh: list[Record] = []
        for index, record in enumerate(accepted):
            error = failed.get(index)
            if error is None and job["status"] == "complete":
                outcomes[record.key] = Outcome(record.key, True, record.destination_ref)
            elif error is not None and error.get("code") == "not_found" and record.destination_ref:
                retry_fresh.append(Record(record.key, record.payload, None))
            else:
                reason = (error or {}).get("detail") or (
                    f"Klaviyo bulk import job {job_id} ended {job['status']}"
                )
                outcomes[record.key] = Outcome(record.key, False, error=str(reason))
        if retry_fresh:
            # Profiles deleted in Klaviyo since we last wrote them: import them anew.
            self.took("per_record", len(retry_fresh))
            outcomes.update(self._upsert_each(retry_fresh))
        return outcomes

    def _wait_for_job(self, job_id: str) -> tuple[dict[str, Any] | None, str]:
        """Poll the job with growing pauses until it ends or ``job_timeout`` passes."""
        deadline = time.monotonic() + self.job_timeout
        delay = self.poll_initial
        status = "queued"
        while True:
            response = self._request("GET", f"/api/profile-bulk-import-jobs/{quote(job_id)}")
            self.raise_if_refused(response)
            if not response.is_success:
                return None, f"cannot read Klaviyo job {job_id}: {self.error_message(response)}"
            attributes: dict[str, Any] = _data(response).get("attributes") or {}
            status = str(attributes.get("status"))
            if status in ("complete", "cancelled"):
                return attributes, ""
            if time.monotonic() + delay > deadline:
                return None, (
                    f"Klaviyo bulk import job {job_id} was still {status} after "
                    f"{self.job_timeout:g}s; the records will be sent again"
                )
            self.client.sleep(delay)
            delay = min(delay * 1.6, self.poll_max)

    def _import_errors(self, job_id: str) -> list[dict[str, Any]]:
        """Every import error of a job (pages of 100, following ``links.next``)."""
        errors: list[dict[str, Any]] = []
        params: dict[str, Any] = {"page[size]": 100}
        while True:
            response = self._request(
                "GET", f"/api/profile-bulk-import-jobs/{quote(job_id)}/import-errors", params=params
            )
            self.raise_if_refused(response)
            if not response.is_success:
                return errors
            body = json_body(response)
            errors.extend(item.get("attributes") or {} for item in body.get("data") or [])
            cursor = _cursor((body.get("links") or {}).get("next"))
            if not cursor:
                return errors
            params = {"page[size]": 100, "page[cursor]": cursor}

    def _send_isolating(
        self, records: list[Record], items: list[dict[str, Any]], send: Sender
    ) -> tuple[dict[str, Outcome], list[Record], httpx.Response | None]:
        """Send a multi-profile request; when Klaviyo refuses it because of one profile, fail
        that record and send the rest again. Returns the failures, the records finally
        accepted and the accepting response (``None`` if nothing was accepted)."""
        outcomes: dict[str, Outcome] = {}
        while records:
            response = send(items)
            if response.is_success:
                return outcomes, records, response
            self._fail_unless_ok(response, "list")
            index = _profile_index(response)
            if index is None or index >= len(records):
                for record in records:
                    outcomes[record.key] = self.outcome(record, response)
                return outcomes, [], None
            outcomes[records[index].key] = self.outcome(records[index], response)
            records = records[:index] + records[index + 1 :]
            items = items[:index] + items[index + 1 :]
        return outcomes, [], None

    def _subscribe(
        self, records: Sequence[Record], known: dict[str, Outcome]
    ) -> dict[str, Outcome]:
        """Give email marketing consent (and list membership) to ``records``."""
        outcomes: dict[str, Outcome] = {}
        list_ref = {"list": {"data": {"type": "list", "id": self.list_id}}}

        def send(profiles: list[dict[str, Any]]) -> httpx.Response:
            body = {
                "data": {
                    "type": "profile-subscription-bulk-create-job",
                    "attributes": {"profiles": {"data": profiles}},
                    "relationships": list_ref,
                }
            }
            return self._request("POST", "/api/profile-subscription-bulk-create-jobs", body)

        for start in range(0, len(records), SUBSCRIBE_MAX):
            chunk = list(records[start : start + SUBSCRIBE_MAX])
            items = [_consent(r.payload["email"], "SUBSCRIBED") for r in chunk]
            for record, item in zip(chunk, items, strict=True):
                ref = known[record.key].destination_ref
                if ref:
                    item["id"] = ref
            failed, _, _ = self._send_isolating(chunk, items, send)
            outcomes.update(failed)
        return outcomes

    # -- remove -------------------------------------------------------------------------

    def remove(self, records: Sequence[Record]) -> list[Outcome]:
        self.took("bulk", len(records))
        outcomes: dict[str, Outcome] = {}
        emails: dict[str, str] = {}
        phones: dict[str, str] = {}
        ids: dict[str, str] = {}
        for record in records:
            email = record.payload.get("email") or (record.key if "@" in record.key else None)
            phone = record.payload.get("phone_number")
            if email and (self.subscribe or not record.destination_ref):
                emails[record.key] = str(email)
            elif phone and not record.destination_ref:
                phones[record.key] = str(phone)
            elif record.destination_ref:
                ids[record.key] = record.destination_ref
            else:
                outcomes[record.key] = Outcome(
                    record.key, False, error="no Klaviyo profile id, email or phone known"
                )
        members = {
            **self._members("email", emails),
            **self._members("phone_number", phones),
        }
        for key in [*emails, *phones]:
            if key in members:
                ids[key] = members[key]
            else:  # not in the list: nothing to remove
                outcomes[key] = Outcome(key, True, None)
        by_key = {record.key: record for record in records}
        if self.subscribe:
            leaving = [by_key[k] for k in ids if k in emails]
            outcomes.update(self._unsubscribe(leaving, emails))
        remaining = [k for k in ids if k not in outcomes]
        for start in range(0, len(remaining), LIST_MEMBERS_MAX):
            chunk = remaining[start : start + LIST_MEMBERS_MAX]
            body = {"data": [{"type": "profile", "id": ids[k]} for k in chunk]}
            response = self._request("DELETE", self._list_path("/relationships/profiles"), body)
            self._fail_unless_ok(response, "list")
            for key in chunk:
                outcomes[key] = self.outcome(by_key[key], response, ids[key])
        return [outcomes[record.key] for record in records]

    def _members(self, field: str, values: dict[str, str]) -> dict[str, str]:
        """Record key -> profile id, for the records whose ``field`` is a list member."""
        found: dict[str, str] = {}
        keys = list(values)
        for start in range(0, len(keys), LOOKUP_MAX):
            chunk = keys[start : start + LOOKUP_MAX]
            wanted = ",".join(json.dumps(values[k]) for k in chunk)
            params = {"filter": f"any({field},[{wanted}])", "page[size]": LOOKUP_MAX}
            response = self._request("GET", self._list_path("/profiles"), params=params)
            self._fail_unless_ok(response, "list")
            if not response.is_success:
                raise DestinationError(
                    f"cannot look up Klaviyo list members: {self.error_message(response)}"
                )
            holders = {
                _norm(field, (item.get("attributes") or {}).get(field)): item["id"]
                for item in json_body(response).get("data") or []
            }
            for key in chunk:
                profile_id = holders.get(_norm(field, values[key]))
                if profile_id:
                    found[key] = profile_id
        return found

    def _unsubscribe(self, records: Sequence[Record], emails: dict[str, str]) -> dict[str, Outcome]:
        """Withdraw consent in the list's context; failures keep the record in the list."""
        outcomes: dict[str, Outcome] = {}
        list_ref = {"list": {"data": {"type": "list", "id": self.list_id}}}

        def send(profiles: list[dict[str, Any]]) -> httpx.Response:
            body = {
                "data": {
                    "type": "profile-subscription-bulk-delete-job",
                    "attributes": {"profiles": {"data": profiles}},
                    "relationships": list_ref,
                }
            }
            return self._request("POST", "/api/profile-subscription-bulk-delete-jobs", body)

        for start in range(0, len(records), UNSUBSCRIBE_MAX):
            chunk = list(records[start : start + UNSUBSCRIBE_MAX])
            items = [_consent(emails[r.key], "UNSUBSCRIBED") for r in chunk]
            failed, _, _ = self._send_isolating(chunk, items, send)
            outcomes.update(failed)
        return outcomes


def _present(value: Any) -> bool:
    return value is not None and value != ""


def _norm(field: str, value: Any) -> str:
    text = str(value or "").strip()
    return text.lower() if field == "email" else text


def _consent(email: str, consent: str) -> dict[str, Any]:
    return {
        "type": "profile",
        "attributes": {
            "email": email,
            "subscriptions": {"email": {"marketing": {"consent": consent}}},
        },
    }


def _data(response: httpx.Response) -> dict[str, Any]:
    data = json_body(response).get("data")
    return data if isinstance(data, dict) else {}


def _first_error(response: httpx.Response) -> dict[str, Any]:
    errors = json_body(response).get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return errors[0]
    return {}


def _parameter(response: httpx.Response) -> str | None:
    source = _first_error(response).get("source") or {}
    return source.get("parameter") if isinstance(source, dict) else None


def _pointer(response: httpx.Response) -> str:
    source = _first_error(response).get("source") or {}
    pointer = source.get("pointer") if isinstance(source, dict) else None
    return pointer if isinstance(pointer, str) else ""


def _profile_index(response: httpx.Response) -> int | None:
    match = PROFILE_POINTER.match(_pointer(response))
    return int(match.group(1)) if match else None


def _cursor(next_link: Any) -> str | None:
    if not isinstance(next_link, str):
        return None
    values = parse_qs(urlsplit(next_link).query).get("page[cursor]")
    return values[0] if values else None


def _match_errors(
    records: Sequence[Record], errors: list[dict[str, Any]]
) -> dict[int, dict[str, Any]]:
    """Import errors by the index of the record they concern: by ``source.pointer`` into
    the job's request, else by an identifier of the ``original_payload``."""
    by_identifier: dict[tuple[str, str], int] = {}
    for position, record in enumerate(records):
        for kind in IDENTIFIERS:
            if _present(record.payload.get(kind)):
                by_identifier.setdefault((kind, _norm(kind, record.payload[kind])), position)
    failed: dict[int, dict[str, Any]] = {}
    for error in errors:
        pointer = (error.get("source") or {}).get("pointer") or ""
        match = PROFILE_POINTER.match(pointer)
        index: int | None = int(match.group(1)) if match else None
        if index is None or index >= len(records):
            original = error.get("original_payload") or {}
            attributes = original.get("attributes") or original
            index = next(
                (
                    by_identifier[(kind, _norm(kind, attributes[kind]))]
                    for kind in IDENTIFIERS
                    if _present(attributes.get(kind))
                    and (kind, _norm(kind, attributes[kind])) in by_identifier
                ),
                None,
            )
        if index is not None:
            failed.setdefault(index, error)
    return failed
