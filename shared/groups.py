"""Audience groups (seed 003): loyalty tiers over one field's value ranges, and A/B split groups.

A loyalty tier group is an ``AudienceGroup`` (``kind="loyalty_tiers"``) whose tiers are ordinary
rule-based audiences (``Audience.group_id`` points at the group, ``group_config`` holds the
tier's range). A tier holds the values ``min <= value < max``: half-open ranges, so a value on a
boundary (exactly 100.00) is in one tier only; the top tier may have no ``max`` and the bottom
one no ``min``. Ranges may leave gaps but must not overlap.

A split group is an ``AudienceGroup`` (``kind="split_test"``) over one audience, with one
``AudienceGroup`` row (``kind="split"``) per part; see ``shared.domain.groups`` for how members
are assigned.

Nothing here knows HTTP: errors are ``GroupError`` (input that cannot make a group) and
``GroupInUse`` (an audience sync still depends on it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shared.db.audience_models import AudienceGroup
from shared.db.models import Audience, AudienceSync
from shared.db.types import utcnow
from shared.domain.groups import SPLIT, SPLIT_TEST, in_part, plan_parts
from shared.domain.members import Member, MemberPage, MemberSource, encode_cursor

LOYALTY_TIERS = "loyalty_tiers"
MAX_TIERS = 50
MAX_SPLITS = 20
SCAN_PAGE = 500  # rows read per query while filling a page of one split's members


class GroupError(ValueError):
    """Input that cannot make the group; the message names the item and says why."""


class GroupInUse(Exception):
    """An audience sync still reads an audience or split of the group."""


# Loyalty tiers ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    min: float | None
    max: float | None
    id: str | None = None  # the tier's audience, when updating


def check_tiers(tiers: Sequence[Tier]) -> list[Tier]:
    """The tiers ordered by range; ``GroupError`` for empty or overlapping ranges."""
    if not 1 <= len(tiers) <= MAX_TIERS:
        raise GroupError(f"tiers: between 1 and {MAX_TIERS} tiers")
    names = [tier.name for tier in tiers]
    if len(set(names)) != len(names):
        raise GroupError("tiers: names must be unique")
    for index, tier in enumerate(tiers):
        if tier.min is None and tier.max is None:
            raise GroupError(f"tiers[{index}]: give min, max or both")
        for bound in (tier.min, tier.max):
            if bound is not None and not math.isfinite(bound):
                raise GroupError(f"tiers[{index}]: bounds must be finite numbers")
        if tier.min is not None and tier.max is not None and tier.min >= tier.max:
            raise GroupError(f"tiers[{index}] ({tier.name}): min must be below max")
    ordered = sorted(tiers, key=lambda t: -math.inf if t.min is None else t.min)
    for below, above in pairwise(ordered):
        top = math.inf if below.max is None else below.max
        bottom = -math.inf if above.min is None else above.min
        if top > bottom:
            raise GroupError(f"tiers {below.name!r} and {above.name!r} overlap")
    return ordered


def tier_rules(field: str, tier: Tier) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = []
    if tier.min is not None:
        conditions.append({"field": field, "op": "gte", "value": tier.min})
    if tier.max is not None:
        conditions.append({"field": field, "op": "lt", "value": tier.max})
    return {"all": conditions}


def tier_config(tier: Tier, position: int) -> dict[str, Any]:
    return {"tier": tier.name, "min": tier.min, "max": tier.max, "position": position}


def create_tiers(
    session: Session,
    workspace_id: str,
    name: str,
    field: str,
    source_id: str | None,
    tiers: Sequence[Tier],
) -> tuple[AudienceGroup, list[Audience]]:
    """A loyalty tier group and one rule-based audience per tier (named "<group>: <tier>")."""
    ordered = check_tiers(tiers)
    group = AudienceGroup(
        workspace_id=workspace_id,
        kind=LOYALTY_TIERS,
        name=name,
        config={"field": field, "source_id": source_id},
    )
    session.add(group)
    session.flush()
    audiences = [
        _tier_audience(group, field, source_id, tier, position)
        for position, tier in enumerate(ordered)
    ]
    session.add_all(audiences)
    session.flush()
    return group, audiences


def _tier_audience(
    group: AudienceGroup, field: str, source_id: str | None, tier: Tier, position: int
) -> Audience:
    return Audience(
        workspace_id=group.workspace_id,
        name=f"{group.name}: {tier.name}",
        description=f"loyalty tier {tier.name} of {group.name}",
        kind="rules",
        source_id=source_id,
        rules=tier_rules(field, tier),
        status="ready",
        status_changed_at=utcnow(),
        group_id=group.id,
        group_config=tier_config(tier, position),
    )


def update_tiers(
    session: Session,
    group: AudienceGroup,
    name: str | None,
    field: str | None,
    tiers: Sequence[Tier],
) -> list[Audience]:
    """New tiers are created, existing ones (by ``id``, else by name) updated, and tiers left
    out archived; an archived tier must not be read by an audience sync (``GroupInUse``)."""
    ordered = check_tiers(tiers)
    if name is not None:
        group.name = name
    field = field or str(group.config["field"])
    source_id = group.config.get("source_id")
    group.config = {**group.config, "field": field}
    current = group_audiences(session, group)
    by_id = {audience.id: audience for audience in current}
    by_name = {(audience.group_config or {}).get("tier"): audience for audience in current}
    kept: list[Audience] = []
    for position, tier in enumerate(ordered):
        if tier.id is not None:
            audience = by_id.get(tier.id)
            if audience is None:
                raise GroupError(f"tier {tier.name!r}: audience {tier.id} is not in this group")
        else:
            audience = by_name.get(tier.name)
        if audience is None or audience in kept:
            audience = _tier_audience(group, field, source_id, tier, position)
            session.add(audience)
        else:
            audience.name = f"{group.name}: {tier.name}"
            audience.rules = tier_rules(field, tier)
            audience.group_config = tier_config(tier, position)
        kept.append(audience)
    removed = [audience for audience in current if audience not in kept]
    _refuse_if_synced(session, [audience.id for audience in removed], [])
    for audience in removed:
        audience.archived_at = utcnow()
    session.flush()
    return kept


def group_audiences(session: Session, group: AudienceGroup) -> list[Audience]:
    """The group's live (not archived) audiences, in tier order."""
    rows = session.execute(
        select(Audience).where(Audience.group_id == group.id, Audience.archived_at.is_(None))
    ).scalars()
    return sorted(rows, key=lambda a: ((a.group_config or {}).get("position", 0), a.created_at))


def tier_of(audiences: Sequence[Audience], field: str) -> Callable[[Member], str | None]:
    """Which tier audience a member of the group is in, from its value of ``field`` (the ranges
    do not overlap, so there is one at most)."""
    ranges = [
        (audience.id, config.get("min"), config.get("max"))
        for audience in audiences
        for config in (audience.group_config or {},)
    ]

    def which(member: Member) -> str | None:
        value = member.row.get(field)
        if isinstance(value, bool) or value is None:
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        for audience_id, low, high in ranges:
            if (low is None or number >= low) and (high is None or number < high):
                return audience_id
        return None

    return which


# Split groups -------------------------------------------------------------------------------
def create_split(
    session: Session, audience: Audience, name: str, parts: Sequence[tuple[str, Any]]
) -> tuple[AudienceGroup, list[AudienceGroup]]:
    """A split group over ``audience`` and one row per part (what a sync's split_group_id
    names); ``GroupError`` unless the percentages sum to 100."""
    if len(parts) > MAX_SPLITS:
        raise GroupError(f"splits: at most {MAX_SPLITS}")
    try:
        planned = plan_parts(parts)
    except ValueError as exc:
        raise GroupError(str(exc)) from None
    group = AudienceGroup(
        workspace_id=audience.workspace_id,
        kind=SPLIT_TEST,
        name=name,
        config={"audience_id": audience.id},
    )
    session.add(group)
    session.flush()
    rows = [
        AudienceGroup(
            workspace_id=audience.workspace_id,
            kind=SPLIT,
            name=part.name,
            config={
                "group_id": group.id,
                "audience_id": audience.id,
                "percentage": str(part.percentage),
                "lower": part.lower,
                "upper": part.upper,
                "position": position,
            },
        )
        for position, part in enumerate(planned)
    ]
    session.add_all(rows)
    session.flush()
    group.config = {**group.config, "splits": [row.id for row in rows]}
    session.flush()
    return group, rows


def split_parts(session: Session, group: AudienceGroup) -> list[AudienceGroup]:
    ids = list(group.config.get("splits") or [])
    if not ids:
        return []
    rows = session.execute(select(AudienceGroup).where(AudienceGroup.id.in_(ids))).scalars()
    return sorted(rows, key=lambda row: int(row.config.get("position", 0)))


def part_filter(part: AudienceGroup) -> Callable[[str], bool]:
    config = part.config
    return in_part(str(config["group_id"]), int(config["lower"]), int(config["upper"]))


def part_of(parts: Sequence[AudienceGroup]) -> Callable[[str], str | None]:
    """Which part a member key is in."""
    filters = [(part.id, part_filter(part)) for part in parts]

    def which(key: str) -> str | None:
        return next((part_id for part_id, belongs in filters if belongs(key)), None)

    return which


def audience_split_groups(
    session: Session, workspace_id: str, audience_id: str
) -> list[AudienceGroup]:
    rows = session.execute(
        select(AudienceGroup)
        .where(AudienceGroup.workspace_id == workspace_id, AudienceGroup.kind == SPLIT_TEST)
        .order_by(AudienceGroup.created_at)
    ).scalars()
    return [row for row in rows if row.config.get("audience_id") == audience_id]


def split_counts(
    source: MemberSource, rules: Mapping[str, Any], parts: Sequence[AudienceGroup]
) -> dict[str, int]:
    """Members per part: streams the audience's keys once (a full read of the audience)."""
    which = part_of(parts)
    counts = {part.id: 0 for part in parts}
    for member in source.iter_members(dict(rules)):
        part_id = which(member.key)
        if part_id is not None:
            counts[part_id] += 1
    return counts


def filtered_page(
    source: MemberSource,
    rules: Mapping[str, Any] | None,
    keep: Callable[[str], bool] | None,
    first: int,
    after: str | None = None,
    search: str | None = None,
) -> MemberPage:
    """A keyset page of the members ``keep`` accepts: reads the source's pages in key order
    until ``first`` (+1, to know there is more) are found. The cursor is the last member's key,
    as for plain pages."""
    if keep is None:
        return source.page(dict(rules or {}), first, after, search)
    found: list[Member] = []
    cursor = after
    while True:
        page = source.page(dict(rules or {}), SCAN_PAGE, cursor, search)
        for member in page.members:
            if keep(member.key):
                found.append(member)
                if len(found) > first:
                    return MemberPage(found[:first], encode_cursor(found[first - 1].key), True)
        if not page.has_next_page:
            end = encode_cursor(found[-1].key) if found else None
            return MemberPage(found, end, False)
        cursor = page.end_cursor


# Both kinds ---------------------------------------------------------------------------------
def _refuse_if_synced(session: Session, audience_ids: list[str], split_ids: list[str]) -> None:
    conditions = []
    if audience_ids:
        conditions.append(AudienceSync.audience_id.in_(audience_ids))
    if split_ids:
        conditions.append(AudienceSync.split_group_id.in_(split_ids))
    if not conditions:
        return
    used = session.execute(select(AudienceSync.name).where(or_(*conditions)).limit(5)).scalars()
    names = list(used)
    if names:
        raise GroupInUse(f"used by audience syncs {names}; delete or change them first")


def delete_group(session: Session, group: AudienceGroup) -> None:
    """Archive a loyalty group's audiences, or drop a split group's parts, then the group;
    nothing changes while an audience sync still reads any of them (``GroupInUse``)."""
    if group.kind == SPLIT_TEST:
        parts = split_parts(session, group)
        _refuse_if_synced(session, [], [part.id for part in parts])
        for part in parts:
            session.delete(part)
    else:
        audiences = group_audiences(session, group)
        _refuse_if_synced(session, [audience.id for audience in audiences], [])
        for audience in audiences:
            audience.archived_at = utcnow()
    session.delete(group)
    session.flush()
