"""Field mapping: turning a source row into the payload a destination receives, and its hash.

The hash is what the sync state remembers; a member whose mapped payload hashes the same as
last time needs no call to the destination.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.domain.members import jsonable


@dataclass(frozen=True, slots=True)
class FieldMapping:
    source_column: str
    destination_field: str

    @classmethod
    def parse(cls, items: Sequence[Mapping[str, Any]]) -> list[FieldMapping]:
        return [cls(item["source_column"], item["destination_field"]) for item in items]


def map_row(row: Mapping[str, Any], mapping: Sequence[FieldMapping]) -> dict[str, Any]:
    return {item.destination_field: jsonable(row.get(item.source_column)) for item in mapping}


def payload_hash(payload: Mapping[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
