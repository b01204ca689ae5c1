"""Field mapping transforms, as a user writes them in a sync's field_mapping."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from shared.domain.mapping import FieldMapping, MappingError, map_row

ROW = {
    "email": "  Ada.Lovelace@Example.COM ",
    "full_name": "Ada King Lovelace",
    "phone": "(415) 555-2671",
    "uk_phone": "020 7946 0958",
    "plan": None,
    "signed_up": datetime(2025, 1, 15, 10, 30, tzinfo=UTC),
}


def mapped(*items: dict) -> dict:
    return map_row(ROW, FieldMapping.parse(items))


def test_google_customer_match_hashing_normalises_first() -> None:
    out = mapped(
        {"source_column": "email", "destination_field": "hashedEmail",
         "transforms": ["normalize_email", "sha256"]},
        {"source_column": "phone", "destination_field": "hashedPhoneNumber",
         "transforms": ["e164", "sha256"]},
    )  # fmt: skip
    assert out["hashedEmail"] == hashlib.sha256(b"ada.lovelace@example.com").hexdigest()
    assert out["hashedPhoneNumber"] == hashlib.sha256(b"+14155552671").hexdigest()


def test_rename_split_default_constant_and_dates() -> None:
    out = mapped(
        {"source_column": "full_name", "destination_field": "first_name",
         "transforms": ["first_name"]},
        {"source_column": "full_name", "destination_field": "last_name",
         "transforms": ["last_name"]},
        {"source_column": "plan", "destination_field": "plan", "default": "free"},
        {"constant": "newsletter", "destination_field": "source"},
        {"source_column": "signed_up", "destination_field": "since",
         "transforms": [{"date_format": "%Y-%m-%d"}]},
        {"source_column": "uk_phone", "destination_field": "phone", "transforms": [{"e164": "GB"}]},
        {"source_column": "email", "destination_field": "email",
         "transforms": ["trim", "lowercase"]},
    )  # fmt: skip
    assert out == {
        "first_name": "Ada",
        "last_name": "King Lovelace",
        "plan": "free",
        "source": "newsletter",
        "since": "2025-01-15",
        "phone": "+442079460958",
        "email": "ada.lovelace@example.com",
    }


def test_a_value_a_transform_cannot_read_becomes_null_not_an_error() -> None:
    row = {"phone": "not a phone"}
    items = [{"source_column": "phone", "destination_field": "p", "transforms": ["e164"]}]
    assert map_row(row, FieldMapping.parse(items)) == {"p": None}


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ({"destination_field": "x"}, "exactly one of source_column and constant"),
        ({"source_column": "a", "constant": 1, "destination_field": "x"}, "exactly one"),
        (
            {"source_column": "a", "destination_field": "x", "transforms": ["rot13"]},
            "unknown transform",
        ),
        (
            {"source_column": "a", "destination_field": "x", "transforms": [{"e164": "XX"}]},
            "region",
        ),
    ],
)
def test_bad_mappings_are_refused_with_the_item_named(item: dict, fragment: str) -> None:
    with pytest.raises(MappingError, match=fragment) as error:
        FieldMapping.parse([item])
    assert "field_mapping[0]" in str(error.value)
