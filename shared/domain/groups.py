"""Split groups for A/B tests: which part of a split a member belongs to.

A split group divides one audience into parts by percentage (they sum to 100). A member's part
is decided by a stable hash of the split group's id and the member's key, never by the order
rows come in or by who else is in the audience, so a member stays in its part from run to run
and joining or leaving of others moves nobody. Each part is its own ``AudienceGroup`` row
(``kind="split"``) so that an audience sync's ``split_group_id`` can name it directly.

Percentages are kept in basis points (hundredths of a percent): a part holds the buckets
``[lower, upper)`` of ``bucket(group_id, key)`` in ``0 .. 9999``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.orm import Session

from shared.db.audience_models import AudienceGroup

BUCKETS = 10_000
SPLIT_TEST = "split_test"  # the group: which audience, which parts
SPLIT = "split"  # one part: what an audience sync's split_group_id names


class SplitError(ValueError):
    """Percentages that cannot make a split: the message says why."""


class UnknownSplit(LookupError):
    """An audience sync names a split group that does not exist (any more)."""


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    percentage: Decimal
    lower: int
    upper: int


def bucket(group_id: str, key: str) -> int:
    """The member's bucket in ``0 .. 9999``: the first 8 bytes of sha256(group id, key)."""
    digest = hashlib.sha256(f"{group_id}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def plan_parts(items: Sequence[tuple[str, Any]]) -> list[Part]:
    """(name, percentage) pairs as parts with contiguous bucket bounds, in the order given.

    Percentages may have two decimals (33.33); they must each be above 0 and sum to exactly 100.
    """
    if len(items) < 2:
        raise SplitError("a split needs at least 2 parts")
    names = [name for name, _ in items]
    if len(set(names)) != len(names):
        raise SplitError("split names must be unique")
    parts: list[Part] = []
    lower = 0
    for index, (name, raw) in enumerate(items):
        try:
            percentage = Decimal(str(raw))
        except InvalidOperation:
            raise SplitError(f"splits[{index}].percentage is not a number") from None
        if not percentage.is_finite() or percentage <= 0:
            raise SplitError(f"splits[{index}].percentage must be above 0")
        points = percentage * 100
        if points != points.to_integral_value():
            raise SplitError(f"splits[{index}].percentage has more than 2 decimals")
        upper = lower + int(points)
        parts.append(Part(name, percentage, lower, upper))
        lower = upper
    if lower != BUCKETS:
        total = Decimal(lower) / 100
        raise SplitError(f"split percentages must sum to 100, not {total.normalize():f}")
    return parts


def in_part(group_id: str, lower: int, upper: int) -> Callable[[str], bool]:
    def belongs(key: str) -> bool:
        return lower <= bucket(group_id, key) < upper

    return belongs


def split_filter(session: Session, split_group_id: str | None) -> Callable[[str], bool] | None:
    """Whether a member key belongs to the split group ``split_group_id`` (one part of a split).

    ``None`` when ``split_group_id`` is ``None``: the whole audience is synced. Raises
    ``UnknownSplit`` when the id names no split group, so a run fails loudly rather than
    sending the whole audience to a destination meant to get only a part of it.
    """
    if split_group_id is None:
        return None
    part = session.get(AudienceGroup, split_group_id)
    if part is None or part.kind != SPLIT:
        raise UnknownSplit(f"split group {split_group_id} does not exist")
    config = part.config
    return in_part(str(config["group_id"]), int(config["lower"]), int(config["upper"]))


def split_audience_id(session: Session, split_group_id: str) -> str | None:
    """The audience a split group divides (``None`` when the id names no split group); an
    audience sync's ``split_group_id`` must divide that sync's own audience."""
    part = session.get(AudienceGroup, split_group_id)
    if part is None or part.kind != SPLIT:
        return None
    return str(part.config["audience_id"])
