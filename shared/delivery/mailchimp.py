"""Mailchimp Marketing API v3: members of one audience (``config.list_id``).

Addressing: members are identified by their subscriber hash, the MD5 of the lower-cased
email; the hash is the ``destination_ref``. The API lives at ``https://<dc>.api.mailchimp.com``
where ``<dc>`` is the API key's suffix (``abc123-us6`` -> ``us6``); ``config.base_url``
replaces that host root (paths stay ``/3.0/...``; a trailing ``/3.0`` is tolerated). Requests
authenticate with HTTP Basic: any user name, the API key as the password.

Mapping: ``email`` (required) is the address, ``status`` sets the member status explicitly
(subscribed, unsubscribed, cleaned, pending, transactional), ``tags`` (a list or a
comma-separated string) adds tags. Every other destination field is a merge field: the
aliases ``first_name``/``last_name``/``phone``/``address``/``birthday`` mean
FNAME/LNAME/PHONE/ADDRESS/BIRTHDAY, any other name is upper-cased and must then be a valid
merge tag (letters, digits, underscores, at most 10). Mailchimp refuses merge fields the
audience does not define, so missing ones are created as ``text`` fields before writing, like
the Resend connector creates properties. A ``None`` value clears the field (``""``).

Status: new members start ``subscribed``, or ``pending`` with ``config.double_opt_in`` (via
``status_if_new``, so an upsert never re-subscribes someone who unsubscribed). Archived
members are re-added by an upsert (the service's rule). Tags from ``config.tags`` and the
``tags`` field are added (``active``) after the member is written; tags are never taken away,
since the connector cannot know which ones it added before.

Removal archives the member (``DELETE``); with ``config.permanent_delete`` it erases it
(``actions/delete-permanent``), after which Mailchimp refuses to re-import the address unless
the person re-subscribes. A member already gone counts as removed.

Paths: a call bringing 10 or more records uses batch subscribe (``POST /3.0/lists/{id}``, up
to 500 members, per-member errors), fewer go one ``PUT`` each. A member whose email changed
since it was delivered is always sent alone, to its old hash, so its address is changed
rather than a second member created. Mailchimp's only published limit is 10 simultaneous
connections per account: a run sends up to 10 batches at once (``config.max_connections``
asks for fewer when other tools share the account), and every worker's requests together
stay within it through the shared limiter.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from shared.delivery.base import HttpConnector, json_body, offset_pages
from shared.delivery.connector import DestinationError, Outcome, Record
from shared.delivery.http import DeliveryClient, RetryPolicy

API = "/3.0"
MEMBER_FIELDS = frozenset({"email", "status", "tags"})
ALIASES = {
    "first_name": "FNAME",
    "last_name": "LNAME",
    "phone": "PHONE",
    "address": "ADDRESS",
    "birthday": "BIRTHDAY",
}
MERGE_TAG = re.compile(r"^[A-Z0-9_]{1,10}$")
KEY_DATACENTER = re.compile(r"-([a-z]+[0-9]+)$")
HASH = re.compile(r"^[0-9a-f]{32}$")
STATUSES = frozenset({"subscribed", "unsubscribed", "cleaned", "pending", "transactional"})
BULK_THRESHOLD = 10
TAG_NAME_MAX = 100
MERGE_PAGE = 1000


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: MD5 of the lower-cased address."""
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def merge_tag(field: str) -> str:
    """The merge tag a destination field writes."""
    return ALIASES.get(field.lower(), field.upper())


def _tag_names(value: Any) -> list[str]:
    if value is None:
        return []
    items: Iterable[Any] = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        items = [items]
    return [str(item).strip() for item in items if str(item).strip()]


class MailchimpConnector(HttpConnector):
    type: ClassVar[str] = "mailchimp"
    batch_size: ClassVar[int] = 500
    default_base_url: ClassVar[str] = "https://us1.api.mailchimp.com"
    # Mailchimp's one published limit: 10 simultaneous connections per account. It publishes
    # no request rate, so the rate is only a ceiling against a service answering instantly.
    max_concurrency: ClassVar[int | None] = 10
    default_rate: ClassVar[float] = 100.0

    def __init__(
        self,
        config: dict[str, Any],
        credentials: dict[str, Any],
        policy: RetryPolicy,
        client: DeliveryClient | None = None,
    ) -> None:
        super().__init__(config, credentials, policy, client)
        self.list_id = str(config["list_id"])
        self.status_if_new = "pending" if config.get("double_opt_in") else "subscribed"
        self.permanent_delete = bool(config.get("permanent_delete"))
        self.config_tags = _tag_names(config.get("tags"))
        self._merge_types: dict[str, str] | None = None
        self._merge_lock = threading.Lock()  # batches run in parallel threads

    @classmethod
    def base_url(cls, config: dict[str, Any], credentials: dict[str, Any]) -> str:
        """The host root: ``config.base_url`` or the key's datacenter host."""
        configured = config.get("base_url")
        if configured:
            root = str(configured).rstrip("/")
            return root.removesuffix(API)
        match = KEY_DATACENTER.search(str(credentials.get("api_key", "")))
        return f"https://{match.group(1)}.api.mailchimp.com" if match else cls.default_base_url

    @staticmethod
    def auth_headers(credentials: dict[str, Any]) -> dict[str, str]:
        token = base64.b64encode(f"audiencesync:{credentials['api_key']}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    @staticmethod
    def validate_config(config: dict[str, Any], credentials: dict[str, Any]) -> None:
        key = credentials.get("api_key")
        if not isinstance(key, str) or not key:
            raise ValueError("credentials.api_key is required")
        if not config.get("base_url") and not KEY_DATACENTER.search(key):
            raise ValueError(
                "credentials.api_key must end with its datacenter, like '...-us6' "
                "(Mailchimp keys do)"
            )
        list_id = config.get("list_id")
        if not isinstance(list_id, str) or not list_id.strip():
            raise ValueError("config.list_id (the Mailchimp audience id) is required")
        for flag in ("double_opt_in", "permanent_delete"):
            if config.get(flag) is not None and not isinstance(config[flag], bool):
                raise ValueError(f"config.{flag} must be true or false")
        tags = config.get("tags")
        if tags is not None:
            if not isinstance(tags, list) or not all(
                isinstance(tag, str) and tag.strip() for tag in tags
            ):
                raise ValueError("config.tags must be a list of tag names")
            if any(len(tag.strip()) > TAG_NAME_MAX for tag in tags):
                raise ValueError(f"Mailchimp tag names are at most {TAG_NAME_MAX} characters")

    @staticmethod
    def validate_mapping(destination_fields: Sequence[str]) -> None:
        if "email" not in destination_fields:
            raise ValueError("Mailchimp identifies members by email: map a column to 'email'")
        seen: dict[str, str] = {}
        for field in destination_fields:
            if field in MEMBER_FIELDS:
                continue
            tag = merge_tag(field)
            if not MERGE_TAG.match(tag) or tag == "EMAIL":
                raise ValueError(
                    f"{field!r} is not a Mailchimp member field (email, status, tags) or a valid "
                    "merge tag (letters, digits and underscores, at most 10)"
                )
            if tag in seen:
                raise ValueError(f"{seen[tag]!r} and {field!r} both write merge field {tag}")
            seen[tag] = field

    def check(self) -> None:
        response = self.client.request("GET", f"{API}/ping")
        self.raise_if_refused(response)
        if not response.is_success:
            raise DestinationError(f"Mailchimp did not answer ping: {self.error_message(response)}")
        response = self.client.request("GET", self._list_path())
        self.raise_if_refused(response)
        if response.status_code == 404:
            raise DestinationError(f"Mailchimp audience {self.list_id} does not exist")
        if not response.is_success:
            raise DestinationError(
                f"cannot read Mailchimp audience {self.list_id}: {self.error_message(response)}"
            )

    # --- upsert -----------------------------------------------------------------------

    def upsert(self, records: Sequence[Record]) -> list[Outcome]:
        outcomes: dict[str, Outcome] = {}
        ready: list[Record] = []
        for record in records:
            problem = self._local_problem(record)
            if problem:
                outcomes[record.key] = Outcome(record.key, False, error=problem)
            else:
                ready.append(record)
        self._ensure_merge_fields(ready)
        moved = [r for r in ready if self._old_hash(r) is not None]
        batchable = [r for r in ready if self._old_hash(r) is None]
        alone = moved
        if len(batchable) >= BULK_THRESHOLD:
            outcomes.update(self._batch(batchable))
            self.took("bulk", len(batchable))
        else:
            alone = moved + batchable
        for record in alone:
            outcomes[record.key] = self._put(record)
        if alone:
            self.took("per_record", len(alone))
        for record in ready:
            outcome = outcomes[record.key]
            tags = self._tags_for(record)
            if outcome.ok and tags and outcome.destination_ref:
                outcomes[record.key] = self._add_tags(record, outcome, tags)
        return [outcomes[record.key] for record in records]

    def _local_problem(self, record: Record) -> str:
        email = record.payload.get("email")
        if not isinstance(email, str) or not email.strip():
            return "no email to send"
        status = record.payload.get("status")
        if status is not None and status not in STATUSES:
            return f"{status!r} is not a Mailchimp member status ({', '.join(sorted(STATUSES))})"
        return ""

    def _old_hash(self, record: Record) -> str | None:
        """The hash the member was delivered under, when its email has changed since."""
        ref = record.destination_ref
        if ref and HASH.match(ref) and ref != subscriber_hash(record.payload["email"]):
            return ref
        return None

    def _member_body(self, record: Record) -> dict[str, Any]:
        payload = record.payload
        body: dict[str, Any] = {
            "email_address": str(payload["email"]).strip(),
            "status_if_new": self.status_if_new,
        }
        if payload.get("status") is not None:
            body["status"] = payload["status"]
        merge_fields = {
            merge_tag(field): self._merge_value(merge_tag(field), value)
            for field, value in payload.items()
            if field not in MEMBER_FIELDS
        }
        if merge_fields:
            body["merge_fields"] = merge_fields
        return body

    def _merge_value(self, tag: str, value: Any) -> Any:
        kind = (self._merge_types or {}).get(tag, "text")
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if kind == "number" and isinstance(value, int | float):
            return value
        if kind == "address" and isinstance(value, dict):
            return value
        if isinstance(value, datetime | date):
            return value.isoformat()
        return value if isinstance(value, str) else str(value)

    def _put(self, record: Record) -> Outcome:
        body = self._member_body(record)
        own = subscriber_hash(body["email_address"])
        old = self._old_hash(record)
        response = self.client.request("PUT", self._member_path(old or own), json=body)
        if response.status_code == 404 and old is not None:
            # The old member is gone: the new address becomes a member of its own.
            response = self.client.request("PUT", self._member_path(own), json=body)
        ref = json_body(response).get("id") if response.is_success else None
        return self.outcome(record, response, ref)

    def _batch(self, records: Sequence[Record]) -> dict[str, Outcome]:
        """One batch-subscribe call. Each member's result is read from ``new_members``,
        ``updated_members`` or ``errors``; a member in none of them was accepted without
        complaint (decision: treated as written, with its computed hash)."""
        members = [self._member_body(record) for record in records]
        response = self.client.request(
            "POST", self._list_path(), json={"members": members, "update_existing": True}
        )
        self.raise_if_refused(response)
        if not response.is_success:
            return {record.key: self.outcome(record, response) for record in records}
        answer = json_body(response)
        written: dict[str, str] = {}
        for item in [*answer.get("new_members", []), *answer.get("updated_members", [])]:
            written[str(item.get("email_address", "")).lower()] = str(item.get("id", ""))
        errors = {
            str(item.get("email_address", "")).lower(): item for item in answer.get("errors", [])
        }
        outcomes: dict[str, Outcome] = {}
        for record, member in zip(records, members, strict=True):
            email = member["email_address"].lower()
            error = errors.get(email)
            if error is not None:
                message = str(error.get("error") or error.get("error_code") or "refused")
                outcomes[record.key] = Outcome(record.key, False, error=message, status_code=400)
            else:
                ref = written.get(email) or subscriber_hash(email)
                outcomes[record.key] = Outcome(record.key, True, ref)
        return outcomes

    def _tags_for(self, record: Record) -> list[str]:
        names = [*self.config_tags, *_tag_names(record.payload.get("tags"))]
        return list(dict.fromkeys(names))

    def _add_tags(self, record: Record, written: Outcome, tags: list[str]) -> Outcome:
        body = {"tags": [{"name": name, "status": "active"} for name in tags]}
        path = f"{self._member_path(str(written.destination_ref))}/tags"
        response = self.client.request("POST", path, json=body)
        return self.outcome(record, response, written.destination_ref)

    # --- merge fields -----------------------------------------------------------------

    def _ensure_merge_fields(self, records: Sequence[Record]) -> None:
        wanted = {
            merge_tag(field): field
            for record in records
            for field in record.payload
            if field not in MEMBER_FIELDS
        }
        if not wanted:
            return
        with self._merge_lock:
            self._create_missing_merge_fields(wanted)

    def _create_missing_merge_fields(self, wanted: dict[str, str]) -> None:
        if self._merge_types is None:
            self._merge_types = self._list_merge_fields()
        for tag, field in wanted.items():
            if tag in self._merge_types:
                continue
            response = self.client.request(
                "POST",
                f"{self._list_path()}/merge-fields",
                json={"tag": tag, "name": field, "type": "text"},
            )
            self.raise_if_refused(response)
            if not response.is_success and "already exists" not in self.error_message(response):
                raise DestinationError(
                    f"Mailchimp refused to create merge field {tag}: {self.error_message(response)}"
                )
            self._merge_types[tag] = "text"

    def _list_merge_fields(self) -> dict[str, str]:
        pages = offset_pages("merge_fields", MERGE_PAGE, "total_items", size_param="count")
        items = self.list_items(
            f"{self._list_path()}/merge-fields", pages, "Mailchimp merge fields"
        )
        return {str(item["tag"]): str(item.get("type", "text")) for item in items}

    # --- remove -----------------------------------------------------------------------

    def remove(self, records: Sequence[Record]) -> list[Outcome]:
        self.took("per_record", len(records))
        return [self._remove_one(record) for record in records]

    def _remove_one(self, record: Record) -> Outcome:
        email = record.payload.get("email") or record.key
        member = record.destination_ref or subscriber_hash(str(email))
        if self.permanent_delete:
            path = f"{self._member_path(member)}/actions/delete-permanent"
            response = self.client.request("POST", path)
        else:
            response = self.client.request("DELETE", self._member_path(member))
        if response.status_code == 404:
            return Outcome(record.key, True, record.destination_ref)
        return self.outcome(record, response)

    # --- helpers ----------------------------------------------------------------------

    def _list_path(self) -> str:
        return f"{API}/lists/{quote(self.list_id, safe='')}"

    def _member_path(self, member_hash: str) -> str:
        return f"{self._list_path()}/members/{quote(member_hash, safe='')}"

    @staticmethod
    def error_message(response: httpx.Response) -> str:
        """Mailchimp's own words: ``title: detail`` of its problem document, plus the first
        field errors when it lists them."""
        body = json_body(response)
        title, detail = body.get("title"), body.get("detail")
        if not title and not detail:
            return f"HTTP {response.status_code}"
        message = f"{title}: {detail}" if title and detail else str(title or detail)
        fields = body.get("errors")
        if isinstance(fields, list) and fields:
            listed = "; ".join(
                f"{item.get('field')}: {item.get('message')}"
                for item in fields[:3]
                if isinstance(item, dict)
            )
            message = f"{message} ({listed})"
        return message
