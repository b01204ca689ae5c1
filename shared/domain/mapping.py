"""Field mapping: turning a source row into the payload a destination receives, and its hash.

Each item names a ``source_column`` (or a ``constant``) and a ``destination_field``, with an
optional ``default`` (used when the value is null) and a list of ``transforms`` applied in order:

- ``trim``, ``lowercase``, ``uppercase``;
- ``normalize_email`` (trim + lowercase: Google Customer Match's rule before hashing);
- ``e164`` or ``{"e164": "GB"}`` (a phone number to E.164, parsed in that default region);
- ``sha256`` (hex digest of the value as text: hashed-identifier destinations);
- ``first_name`` / ``last_name`` (split a full name: the first word / the rest);
- ``{"date_format": "%Y-%m-%d"}`` (strftime of a date or ISO timestamp).

A value a transform cannot handle (a phone number that does not parse) becomes null, so one bad
row never stops a run; the destination then decides whether the record is acceptable.

The payload hash is what the sync state remembers: a member whose mapped payload hashes the
same as last time needs no call to the destination.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import phonenumbers

from shared.domain.members import jsonable

Transform = Callable[[Any], Any]


class MappingError(ValueError):
    """A mapping item that cannot work; the message names the item."""


@dataclass(frozen=True, slots=True)
class FieldMapping:
    destination_field: str
    source_column: str | None = None
    constant: Any = None
    default: Any = None
    transforms: tuple[Transform, ...] = field(default=())

    @classmethod
    def parse(cls, items: Sequence[Mapping[str, Any]]) -> list[FieldMapping]:
        return [cls.parse_one(item, index) for index, item in enumerate(items)]

    @classmethod
    def parse_one(cls, item: Mapping[str, Any], index: int = 0) -> FieldMapping:
        where = f"field_mapping[{index}]"
        source, constant = item.get("source_column"), item.get("constant")
        if (source is None) == (constant is None):
            raise MappingError(f"{where}: give exactly one of source_column and constant")
        transforms = tuple(
            _transform(spec, f"{where}.transforms[{n}]")
            for n, spec in enumerate(item.get("transforms") or [])
        )
        return cls(item["destination_field"], source, constant, item.get("default"), transforms)

    def value(self, row: Mapping[str, Any]) -> Any:
        value = self.constant if self.source_column is None else row.get(self.source_column)
        for transform in self.transforms:
            if value is None:
                break
            value = transform(value)
        if value is None:
            value = self.default
        return jsonable(value)


def map_row(row: Mapping[str, Any], mapping: Sequence[FieldMapping]) -> dict[str, Any]:
    return {item.destination_field: item.value(row) for item in mapping}


def payload_hash(payload: Mapping[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime | date) else str(value)


def _e164(region: str) -> Transform:
    def convert(value: Any) -> str | None:
        try:
            number = phonenumbers.parse(_text(value), region)
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_possible_number(number):
            return None
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    return convert


def _date_format(pattern: str) -> Transform:
    def convert(value: Any) -> str | None:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return None
        return value.strftime(pattern) if isinstance(value, date | datetime) else None

    return convert


def _split(value: Any) -> list[str]:
    return _text(value).split()


SIMPLE: dict[str, Transform] = {
    "trim": lambda v: _text(v).strip(),
    "lowercase": lambda v: _text(v).lower(),
    "uppercase": lambda v: _text(v).upper(),
    "normalize_email": lambda v: _text(v).strip().lower(),
    "sha256": lambda v: hashlib.sha256(_text(v).encode()).hexdigest(),
    "first_name": lambda v: next(iter(_split(v)), None),
    "last_name": lambda v: " ".join(_split(v)[1:]) or None,
    "e164": _e164("US"),
}
WITH_ARGUMENT: dict[str, Callable[[str], Transform]] = {
    "e164": _e164,
    "date_format": _date_format,
}


def _transform(spec: Any, where: str) -> Transform:
    if isinstance(spec, str) and spec in SIMPLE:
        return SIMPLE[spec]
    if isinstance(spec, Mapping) and len(spec) == 1:
        ((name, argument),) = spec.items()
        if name in WITH_ARGUMENT and isinstance(argument, str):
            if name == "e164" and argument.upper() not in phonenumbers.SUPPORTED_REGIONS:
                raise MappingError(f"{where}: unknown phone region {argument!r}")
            return WITH_ARGUMENT[name](argument.upper() if name == "e164" else argument)
    known = sorted(SIMPLE) + [f"{{{name}: ...}}" for name in WITH_ARGUMENT]
    raise MappingError(f"{where}: unknown transform {spec!r}; one of {known}")
