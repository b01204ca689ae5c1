"""CSV contact imports (``POST /contacts/imports``), processed off the request path.

The bulk path exists so a sync can push many contacts for the price of one request
against the rate limit; the job runs in a worker thread and reports progress through
``GET /contacts/imports/{id}``. Work is applied in chunks, each under the state lock,
so other requests stay responsive while 100,000 rows are processed in a few seconds.
"""

from __future__ import annotations

import csv
import io
import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .contacts import apply_fields, new_contact
from .errors import validation_error
from .state import Account, ContactImport, PropertyValue, ResendEmulatorState, timestamp
from .validate import check_topic_subscriptions, is_valid_email, normalize_email

CHUNK_ROWS = 2_000
TRUE_WORDS = frozenset({"true", "1", "yes", "y", "t"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "f"})
SCALAR_FIELDS = ("email", "first_name", "last_name", "unsubscribed")


class RowError(Exception):
    """A row that cannot be imported; it counts as ``failed``."""


@dataclass(frozen=True)
class PropertyColumn:
    """Where a custom property comes from and how to read it."""

    key: str
    column: str
    type: str


@dataclass
class ImportPlan:
    """A validated import request: which columns feed which fields, and what to add."""

    columns: dict[str, str]
    """Contact field (``email``, ``first_name``...) -> CSV column name."""
    properties: list[PropertyColumn] = field(default_factory=list)
    on_conflict: str = "skip"
    segments: list[str] = field(default_factory=list)
    topics: dict[str, str] = field(default_factory=dict)


def _load_json(raw: str | None, field_name: str) -> Any:
    if raw is None or raw.strip() == "":
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise validation_error(f"The `{field_name}` field must be a JSON-encoded string.") from None


def parse_plan(
    account: Account,
    header: list[str],
    column_map_raw: str | None,
    on_conflict: str | None,
    segments_raw: str | None,
    topics_raw: str | None,
) -> ImportPlan:
    """Validate the form fields against the account and the CSV header (422 on error)."""
    on_conflict = on_conflict or "skip"
    if on_conflict not in ("upsert", "skip"):
        raise validation_error("The `on_conflict` field must be `upsert` or `skip`.")
    column_map = _load_json(column_map_raw, "column_map")
    normalized = {h.strip().lower().replace(" ", "_"): h for h in header}
    columns: dict[str, str] = {}
    properties: list[PropertyColumn] = []
    if column_map is None:
        # Without a map, columns named like the contact fields are used.
        for name in SCALAR_FIELDS:
            if name in normalized:
                columns[name] = normalized[name]
    else:
        if not isinstance(column_map, dict):
            raise validation_error("The `column_map` field must encode a JSON object.")
        for name, value in column_map.items():
            if name in SCALAR_FIELDS:
                if not isinstance(value, str):
                    raise validation_error(f"`column_map.{name}` must be a column name.")
                columns[name] = value
            elif name == "properties":
                properties = _property_columns(account, value)
            else:
                raise validation_error(f"`column_map` has an unknown field `{name}`.")
        if "email" not in columns and "email" in normalized:
            columns["email"] = normalized["email"]
    if "email" not in columns:
        raise validation_error("The CSV needs an email column; map it with `column_map.email`.")
    present = set(header)
    for wanted in [*columns.values(), *(p.column for p in properties)]:
        if wanted not in present:
            raise validation_error(f"The column `{wanted}` is not in the CSV header.")
    return ImportPlan(
        columns=columns,
        properties=properties,
        on_conflict=on_conflict,
        segments=_segment_ids(account, _load_json(segments_raw, "segments")),
        topics=_topics(account, _load_json(topics_raw, "topics")),
    )


def _property_columns(account: Account, raw: Any) -> list[PropertyColumn]:
    if not isinstance(raw, dict):
        raise validation_error("`column_map.properties` must be an object.")
    out = []
    for key, spec in raw.items():
        prop = account.property_by(key)
        if prop is None:
            raise validation_error(
                f"The property `{key}` does not exist. Create it with"
                " POST /contact-properties before importing it."
            )
        if isinstance(spec, str):
            column, declared = spec, prop.type
        elif isinstance(spec, dict) and isinstance(spec.get("column"), str):
            column, declared = spec["column"], spec.get("type") or prop.type
        else:
            raise validation_error(f"`column_map.properties.{key}` needs a `column`.")
        if declared not in ("string", "number", "boolean"):
            raise validation_error(f"Unknown type `{declared}` for property `{key}`.")
        if declared != prop.type:
            raise validation_error(
                f"The property `{key}` is of type `{prop.type}`, not `{declared}`."
            )
        out.append(PropertyColumn(key=key, column=column, type=prop.type))
    return out


def _segment_ids(account: Account, raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise validation_error("The `segments` field must encode a JSON array.")
    ids = []
    for item in raw:
        segment_id = item.get("id") if isinstance(item, dict) else item
        if not isinstance(segment_id, str):
            raise validation_error("Each entry of `segments` must be an object with an `id`.")
        if segment_id not in account.segments:
            raise validation_error(f"The segment `{segment_id}` does not exist.")
        ids.append(segment_id)
    return ids


def _topics(account: Account, raw: Any) -> dict[str, str]:
    return {} if raw is None else check_topic_subscriptions(account, raw, "topics")


def _parse_bool(value: str) -> bool:
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise RowError(f"not a boolean: {value!r}")


def _parse_number(value: str) -> PropertyValue:
    try:
        number = float(value)
    except ValueError:
        raise RowError(f"not a number: {value!r}") from None
    if not math.isfinite(number):
        raise RowError(f"not a finite number: {value!r}")
    return int(number) if number.is_integer() and "." not in value and "e" not in value else number


class ImportJob:
    """One running import: the plan, the CSV text and the counters to update."""

    def __init__(
        self,
        state: ResendEmulatorState,
        account: Account,
        job: ContactImport,
        plan: ImportPlan,
        rows: list[list[str]],
        header: list[str],
    ) -> None:
        self.state = state
        self.account = account
        self.job = job
        self.plan = plan
        self.rows = rows
        position = {name: i for i, name in enumerate(header)}
        self.field_index = {name: position[col] for name, col in plan.columns.items()}
        self.property_index = [(p, position[p.column]) for p in plan.properties]

    def start(self) -> threading.Thread:
        """Run in a daemon thread; the state keeps a handle so tests can join it."""
        thread = threading.Thread(target=self.run, name=f"resend-import-{self.job.id}", daemon=True)
        alive = [t for t in self.state.import_threads if t.is_alive()]
        self.state.import_threads[:] = [*alive, thread]
        thread.start()
        return thread

    def run(self) -> None:
        """Process every row, chunk by chunk, then mark the job completed."""
        if self.state.import_delay > 0:
            time.sleep(self.state.import_delay)
        with self.state.lock:
            self.job.status = "in_progress"
        try:
            for start in range(0, len(self.rows), CHUNK_ROWS):
                with self.state.lock:
                    for row in self.rows[start : start + CHUNK_ROWS]:
                        self._row(row)
        except Exception as exc:  # a bug must not leave the job "in_progress" forever
            with self.state.lock:
                self.job.status = "failed"
                self.job.error = repr(exc)
                self.job.completed_at = timestamp()
            return
        with self.state.lock:
            self.job.status = "completed"
            self.job.completed_at = timestamp()

    def _cell(self, row: list[str], index: int) -> str:
        return row[index].strip() if index < len(row) else ""

    def _row(self, row: list[str]) -> None:
        if not any(cell.strip() for cell in row):
            return  # blank lines are not rows
        counts = self.job.counts
        counts["total"] += 1
        try:
            outcome = self._apply(row)
        except RowError:
            counts["failed"] += 1
            return
        counts[outcome] += 1

    def _apply(self, row: list[str]) -> str:
        fields = {name: self._cell(row, i) for name, i in self.field_index.items()}
        email = fields.get("email", "")
        if not is_valid_email(email):
            raise RowError(f"invalid email {email!r}")
        email = normalize_email(email)
        if self.state.faults.for_email(email) is not None:
            raise RowError(f"email {email!r} rejected by an injected fault")
        unsubscribed = _parse_bool(fields["unsubscribed"]) if fields.get("unsubscribed") else None
        properties: dict[str, PropertyValue | None] = {}
        for prop, index in self.property_index:
            value = self._cell(row, index)
            if value:
                properties[prop.key] = _parse_number(value) if prop.type == "number" else value
        existing_id = self.account.contact_by_email.get(email)
        if existing_id is not None and self.plan.on_conflict == "skip":
            return "skipped"
        contact = (
            self.account.contacts[existing_id]
            if existing_id is not None
            else new_contact(self.account, email)
        )
        apply_fields(
            contact,
            first_name=fields.get("first_name") or None,
            last_name=fields.get("last_name") or None,
            unsubscribed=unsubscribed,
            properties=properties,
            segments=self.plan.segments,
            topics=self.plan.topics,
        )
        return "updated" if existing_id is not None else "created"


def read_csv(text: str) -> tuple[list[str], list[list[str]]]:
    """Split CSV text into a header and rows (422 when there is no header)."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise validation_error("The CSV file is empty.") from None
    except csv.Error as exc:
        raise validation_error(f"The CSV file cannot be parsed: {exc}.") from None
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise validation_error(f"The CSV file cannot be parsed: {exc}.") from None
    return [h.strip() for h in header], rows
