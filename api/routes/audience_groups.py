"""Audience groups and synced lists (seed 003): A/B split groups, loyalty tiers, the members of
a group, and Klaviyo lists imported as synced audiences (and re-synced).

Mounted before ``api.routes.audiences`` (modules mount in name order), so the literal paths
here (``/audiences/groups/...``, ``/audiences/loyalty-tiers``, ``/audiences/import/klaviyo``)
win over ``/audiences/{audience_id}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import DbSession, WorkspaceId
from api.errors import ApiError
from api.routes.audiences import (
    AudienceOut,
    MembersPage,
    PageInfo,
    audience_out,
    member_json,
    rule_errors,
)
from api.routes.lookups import get_owned
from api.routes.sources import source_errors
from api.schemas import Deleted
from shared.config import get_settings
from shared.db.audience_models import AudienceGroup
from shared.db.models import Audience, Destination, Source
from shared.db.session import get_sessionmaker
from shared.db.types import utcnow
from shared.delivery.connector import DestinationError, DestinationUnavailable
from shared.delivery.klaviyo_lists import KlaviyoList, KlaviyoListReader, ListNotFound
from shared.domain.groups import SPLIT_TEST
from shared.domain.members import SOURCE_KINDS, Member, MemberSource, source_for
from shared.domain.rules import validate_rules
from shared.groups import (
    LOYALTY_TIERS,
    GroupError,
    GroupInUse,
    Tier,
    audience_split_groups,
    create_split,
    create_tiers,
    delete_group,
    filtered_page,
    group_audiences,
    part_filter,
    part_of,
    split_counts,
    split_parts,
    tier_of,
    tier_rules,
    update_tiers,
)
from shared.synced_lists import (
    NotSyncable,
    SyncBusy,
    SyncResult,
    claim_sync,
    find_synced,
    klaviyo_source,
    run_sync,
    sync_destination,
)

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/workspaces/{id}/audiences", tags=["audience groups"])

MAX_LISTS_PER_IMPORT = 50


# Bodies -----------------------------------------------------------------------------------------
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    percentage: float = Field(gt=0, le=100, description="at most 2 decimals; all sum to 100")


class SplitGroupCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    splits: list[SplitIn] = Field(min_length=2, max_length=20)


class TierIn(Strict):
    id: str | None = Field(default=None, description="the tier's audience id (updates only)")
    name: str = Field(min_length=1, max_length=150)
    min: float | None = Field(default=None, description="lowest value in the tier (inclusive)")
    max: float | None = Field(default=None, description="first value above the tier (exclusive)")


class LoyaltyTiersCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    field: str = Field(
        min_length=1, max_length=200, description="e.g. metadata.totalOrderValue or a column"
    )
    source_id: str | None = Field(default=None, description="default: the contact store")
    tiers: list[TierIn] = Field(min_length=1, max_length=50)


class LoyaltyTiersUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    field: str | None = Field(default=None, min_length=1, max_length=200)
    tiers: list[TierIn] = Field(min_length=1, max_length=50)


class KlaviyoImport(Strict):
    destination_id: str = Field(description="a destination of type klaviyo: its credentials")
    list_ids: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=MAX_LISTS_PER_IMPORT
    )


class TierOut(BaseModel):
    id: str = Field(description="the tier's audience")
    name: str
    min: float | None
    max: float | None
    rules: dict[str, Any]
    count: int | None = None


class SplitOut(BaseModel):
    id: str = Field(description="what an audience sync's split_group_id names")
    name: str
    percentage: float
    count: int | None = None


class GroupOut(BaseModel):
    id: str
    kind: Literal["loyalty_tiers", "split_test"]
    name: str
    created_at: datetime
    updated_at: datetime
    field: str | None = None
    source_id: str | None = None
    audience_id: str | None = Field(default=None, description="the audience a split divides")
    tiers: list[TierOut] | None = None
    audiences: list[AudienceOut] | None = None
    splits: list[SplitOut] | None = None


class ListImportOut(BaseModel):
    list_id: str
    list_name: str
    created: bool
    audience: AudienceOut | None = None
    members: int | None = None
    skipped: int | None = Field(default=None, description="profiles without a usable email")
    error: str | None = None


class KlaviyoImportOut(BaseModel):
    lists: list[ListImportOut]


class SyncOut(BaseModel):
    audience: AudienceOut
    members: int
    skipped: int


# Helpers ----------------------------------------------------------------------------------------
@contextmanager
def group_errors() -> Iterator[None]:
    try:
        yield
    except GroupError as exc:
        raise ApiError(422, str(exc)) from None
    except GroupInUse as exc:
        raise ApiError(409, f"group is {exc}") from None


@contextmanager
def klaviyo_errors() -> Iterator[None]:
    """Klaviyo's problems as one clear answer, in Klaviyo's own words, never with the key."""
    try:
        yield
    except DestinationUnavailable as exc:
        raise ApiError(502, f"Klaviyo is unavailable: {exc}", code="source_unavailable") from None
    except ListNotFound as exc:
        raise ApiError(422, str(exc), code="list_not_found") from None
    except DestinationError as exc:
        raise ApiError(422, str(exc), code="source_refused") from None


def _group(session: Session, group_id: str, workspace_id: str) -> AudienceGroup:
    group = session.get(AudienceGroup, group_id)
    if (
        group is None
        or group.workspace_id != workspace_id
        or group.kind not in (LOYALTY_TIERS, SPLIT_TEST)
    ):
        raise ApiError(404, "audience group not found")
    return group


def _check_source(session: Session, workspace_id: str, source_id: str | None) -> None:
    if source_id is None:
        return
    source = session.get(Source, source_id)
    if source is None or source.workspace_id != workspace_id:
        raise ApiError(404, "source not found")
    if source.kind not in SOURCE_KINDS:
        raise ApiError(422, f"source kind {source.kind!r} cannot feed audiences")


def _tiers(items: list[TierIn]) -> list[Tier]:
    return [Tier(item.name, item.min, item.max, item.id) for item in items]


def _source_of_group(session: Session, group: AudienceGroup) -> MemberSource:
    probe = Audience(
        workspace_id=group.workspace_id, source_id=group.config.get("source_id"), rules={}
    )
    probe.kind = "rules"
    with source_errors():
        return source_for(session, probe)


def _check_tier_field(
    session: Session, group: AudienceGroup, field: str, tiers: list[Tier]
) -> None:
    """Every tier's rules compile against the source (422 naming the tier otherwise)."""
    source = _source_of_group(session, group)
    for index, tier in enumerate(tiers):
        try:
            with source_errors(), rule_errors():
                validate_rules(tier_rules(field, tier), source.resolve)
        except ApiError as exc:
            if exc.status != 422:
                raise
            raise ApiError(422, f"tiers[{index}] ({tier.name}): {exc.message}") from None


def _split_audience(session: Session, group: AudienceGroup) -> Audience:
    audience = session.get(Audience, str(group.config.get("audience_id")))
    if audience is None:
        raise ApiError(404, "the audience this split divides no longer exists")
    return audience


def group_out(session: Session, group: AudienceGroup, counts: bool = False) -> GroupOut:
    out = GroupOut(
        id=group.id,
        kind=group.kind,  # type: ignore[arg-type]
        name=group.name,
        created_at=group.created_at,
        updated_at=group.updated_at,
    )
    if group.kind == SPLIT_TEST:
        out.audience_id = str(group.config.get("audience_id"))
        parts = split_parts(session, group)
        numbers: dict[str, int] = {}
        if counts:
            audience = _split_audience(session, group)
            with source_errors(), rule_errors():
                numbers = split_counts(source_for(session, audience), audience.rules, parts)
        out.splits = [
            SplitOut(
                id=part.id,
                name=part.name,
                percentage=float(part.config["percentage"]),
                count=numbers.get(part.id),
            )
            for part in parts
        ]
        return out
    out.field = str(group.config.get("field"))
    out.source_id = group.config.get("source_id")
    audiences = group_audiences(session, group)
    source = _source_of_group(session, group) if counts else None
    out.tiers = []
    for audience in audiences:
        config = audience.group_config or {}
        count = None
        if source is not None:
            with source_errors(), rule_errors():
                count = source.count(audience.rules)
        out.tiers.append(
            TierOut(
                id=audience.id,
                name=str(config.get("tier")),
                min=config.get("min"),
                max=config.get("max"),
                rules=audience.rules,
                count=count,
            )
        )
    out.audiences = [audience_out(session, audience, {"rules"}) for audience in audiences]
    return out


# Split groups -----------------------------------------------------------------------------------
@router.post(
    "/{audience_id}/split-groups",
    response_model=GroupOut,
    status_code=201,
    summary="Split an audience for an A/B test",
)
def create_split_group(
    audience_id: str, body: SplitGroupCreate, workspace_id: WorkspaceId, session: DbSession
) -> GroupOut:
    audience = get_owned(session, Audience, audience_id, workspace_id, "audience")
    with group_errors():
        group, _parts = create_split(
            session, audience, body.name, [(item.name, item.percentage) for item in body.splits]
        )
    return group_out(session, group)


@router.get(
    "/{audience_id}/split-groups",
    response_model=list[GroupOut],
    summary="An audience's split groups",
)
def list_split_groups(
    audience_id: str, workspace_id: WorkspaceId, session: DbSession
) -> list[GroupOut]:
    audience = get_owned(session, Audience, audience_id, workspace_id, "audience")
    groups = audience_split_groups(session, workspace_id, audience.id)
    return [group_out(session, group) for group in groups]


# Loyalty tiers ----------------------------------------------------------------------------------
@router.post(
    "/loyalty-tiers",
    response_model=GroupOut,
    status_code=201,
    summary="Create loyalty tiers: one audience per value range of a field",
)
def create_loyalty_tiers(
    body: LoyaltyTiersCreate, workspace_id: WorkspaceId, session: DbSession
) -> GroupOut:
    _check_source(session, workspace_id, body.source_id)
    tiers = _tiers(body.tiers)
    if any(tier.id is not None for tier in tiers):
        raise ApiError(422, "tiers: a new group's tiers take no id")
    probe = AudienceGroup(
        workspace_id=workspace_id, kind=LOYALTY_TIERS, config={"source_id": body.source_id}
    )
    _check_tier_field(session, probe, body.field, tiers)
    with group_errors():
        group, _audiences = create_tiers(
            session, workspace_id, body.name, body.field, body.source_id, tiers
        )
    return group_out(session, group)


@router.put(
    "/loyalty-tiers/{group_id}",
    response_model=GroupOut,
    summary="Update loyalty tiers: create new, update existing, delete removed",
)
def update_loyalty_tiers(
    group_id: str, body: LoyaltyTiersUpdate, workspace_id: WorkspaceId, session: DbSession
) -> GroupOut:
    group = _group(session, group_id, workspace_id)
    if group.kind != LOYALTY_TIERS:
        raise ApiError(400, "this group is not a loyalty tier group")
    tiers = _tiers(body.tiers)
    _check_tier_field(session, group, body.field or str(group.config["field"]), tiers)
    with group_errors():
        update_tiers(session, group, body.name, body.field, tiers)
    group.updated_at = utcnow()
    session.flush()
    return group_out(session, group)


# Groups -----------------------------------------------------------------------------------------
@router.get("/groups", response_model=list[GroupOut], summary="Loyalty tier and split groups")
def list_groups(workspace_id: WorkspaceId, session: DbSession) -> list[GroupOut]:
    rows = session.execute(
        select(AudienceGroup)
        .where(
            AudienceGroup.workspace_id == workspace_id,
            AudienceGroup.kind.in_((LOYALTY_TIERS, SPLIT_TEST)),
        )
        .order_by(AudienceGroup.created_at)
    ).scalars()
    return [group_out(session, group) for group in rows]


@router.get("/groups/{group_id}", response_model=GroupOut, summary="A group and its audiences")
def get_group(
    group_id: str,
    workspace_id: WorkspaceId,
    session: DbSession,
    include: Annotated[
        str | None,
        Query(description="counts: members per tier or split (a split count reads the audience)"),
    ] = None,
) -> GroupOut:
    if include not in (None, "", "counts"):
        raise ApiError(422, "include: only 'counts'")
    group = _group(session, group_id, workspace_id)
    return group_out(session, group, counts=include == "counts")


@router.get(
    "/groups/{group_id}/members",
    response_model=MembersPage,
    summary="Members across a group's audiences (or one tier / split)",
)
def group_members(
    group_id: str,
    workspace_id: WorkspaceId,
    session: DbSession,
    first: Annotated[int, Query(ge=1, le=100, description="page size")] = 20,
    after: Annotated[str | None, Query(description="end_cursor of the previous page")] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    audience_id: Annotated[
        str | None, Query(alias="audienceId", description="only this tier's audience")
    ] = None,
    split_id: Annotated[str | None, Query(alias="splitId", description="only this split")] = None,
) -> MembersPage:
    group = _group(session, group_id, workspace_id)
    keep: Callable[[str], bool] | None = None
    if group.kind == SPLIT_TEST:
        audience = _split_audience(session, group)
        if audience_id is not None and audience_id != audience.id:
            raise ApiError(404, "audience is not in this group")
        parts = split_parts(session, group)
        which = part_of(parts)
        names = {part.id: part.name for part in parts}
        if split_id is not None:
            chosen = next((part for part in parts if part.id == split_id), None)
            if chosen is None:
                raise ApiError(404, "split is not in this group")
            keep = part_filter(chosen)
        source = source_for(session, audience)
        rules: dict[str, Any] = audience.rules

        def annotate(member: Member) -> dict[str, Any]:
            part_id = which(member.key)
            return {
                **member_json(member),
                "audience_id": audience.id,
                "split_id": part_id,
                "split": names.get(part_id or ""),
            }
    else:
        if split_id is not None:
            raise ApiError(422, "splitId: this group is not a split group")
        audiences = group_audiences(session, group)
        if audience_id is not None:
            audiences = [a for a in audiences if a.id == audience_id]
            if not audiences:
                raise ApiError(404, "audience is not in this group")
        source = _source_of_group(session, group)
        rules = {"any": [a.rules for a in audiences]} if audiences else {"any": []}
        tier = tier_of(audiences, str(group.config["field"]))
        tier_names = {a.id: (a.group_config or {}).get("tier") for a in audiences}

        def annotate(member: Member) -> dict[str, Any]:
            audience_of = tier(member)
            return {
                **member_json(member),
                "audience_id": audience_of,
                "tier": tier_names.get(audience_of or ""),
            }

    if not audiences_present(rules):
        return MembersPage(data=[], page_info=PageInfo(end_cursor=None, has_next_page=False))
    with source_errors(), rule_errors():
        page = filtered_page(source, rules, keep, first, after, search)
    return MembersPage(
        data=[annotate(member) for member in page.members],
        page_info=PageInfo(end_cursor=page.end_cursor, has_next_page=page.has_next_page),
    )


def audiences_present(rules: dict[str, Any]) -> bool:
    """A loyalty group with no tier left has no members (``{"any": []}`` is not "everyone")."""
    return rules != {"any": []}


@router.delete(
    "/groups/{group_id}", response_model=Deleted, summary="Delete a group and its audiences"
)
def delete_audience_group(group_id: str, workspace_id: WorkspaceId, session: DbSession) -> Deleted:
    group = _group(session, group_id, workspace_id)
    with group_errors():
        delete_group(session, group)
    return Deleted()


# Synced lists -----------------------------------------------------------------------------------
def _klaviyo_destination(session: Session, workspace_id: str, destination_id: str) -> Destination:
    destination = get_owned(session, Destination, destination_id, workspace_id, "destination")
    if destination.type != "klaviyo":
        raise ApiError(422, f"destination_id: a {destination.type} destination, not klaviyo")
    return destination


def _sync_result(session: Session, audience_id: str) -> AudienceOut:
    return audience_out(session, session.get_one(Audience, audience_id), {"primarySyncSource"})


@router.post(
    "/import/klaviyo",
    response_model=KlaviyoImportOut,
    status_code=201,
    summary="Import Klaviyo lists as synced audiences",
)
def import_klaviyo_lists(body: KlaviyoImport, workspace_id: WorkspaceId) -> KlaviyoImportOut:
    """Every list is checked first (a missing one is a 422 and nothing is created); then each
    becomes a synced audience (a list imported before is re-synced, not duplicated) and its
    members are read. A list whose read fails is reported with the error; if every list
    fails the answer is that error."""
    sessions = get_sessionmaker()
    with sessions() as session:
        destination = _klaviyo_destination(session, workspace_id, body.destination_id)
    reader = KlaviyoListReader.for_destination(destination, get_settings())
    try:
        with klaviyo_errors():
            lists = [reader.list_info(list_id) for list_id in dict.fromkeys(body.list_ids)]
        claimed = _claim_lists(sessions, workspace_id, destination.id, lists)
        results: list[ListImportOut] = []
        failures: list[ApiError] = []
        for klist, (audience_id, created) in zip(lists, claimed, strict=True):
            item = ListImportOut(list_id=klist.id, list_name=klist.name, created=created)
            try:
                with klaviyo_errors():
                    result = run_sync(sessions, audience_id, reader.members(klist.id))
                item.members, item.skipped = result.members, result.skipped
            except ApiError as exc:
                failures.append(exc)
                item.error = exc.message
            except Exception as exc:  # the next lists still run; this one shows its error
                logger.error("klaviyo_import.list_failed", exc_info=exc)
                failures.append(ApiError(500, "internal error while reading the list"))
                item.error = "internal error while reading the list"
            with sessions() as session:
                item.audience = _sync_result(session, audience_id)
            results.append(item)
    finally:
        reader.close()
    if failures and len(failures) == len(results):
        error = failures[0]
        raise ApiError(
            error.status,
            error.message,
            code=error.code,
            details=[
                item.model_dump(mode="json", include={"list_id", "error"}) for item in results
            ],
        )
    return KlaviyoImportOut(lists=results)


def _claim_lists(
    sessions: Any, workspace_id: str, destination_id: str, lists: list[KlaviyoList]
) -> list[tuple[str, bool]]:
    """Create (or find) the audiences and mark them syncing, in one transaction: if one of
    them is already syncing, nothing is created (409)."""
    claimed: list[tuple[str, bool]] = []
    with sessions.begin() as session:
        for klist in lists:
            audience = find_synced(session, workspace_id, "klaviyo", destination_id, klist.id)
            created = audience is None
            if audience is None:
                audience = Audience(
                    workspace_id=workspace_id,
                    name=klist.name[:200],
                    description=f"Klaviyo list {klist.id}",
                    kind="static",
                    rules={},
                    status="ready",
                    status_changed_at=utcnow(),
                    sync_source=klaviyo_source(destination_id, klist),
                )
                session.add(audience)
                session.flush()
            try:
                claim_sync(session, audience.id)
            except SyncBusy:
                raise ApiError(
                    409, f"a sync of Klaviyo list {klist.id} (audience {audience.id}) is running"
                ) from None
            claimed.append((audience.id, created))
    return claimed


@router.post(
    "/{audience_id}/sync",
    response_model=SyncOut,
    summary="Re-sync a synced list from its source",
)
def sync_audience(audience_id: str, workspace_id: WorkspaceId) -> SyncOut:
    sessions = get_sessionmaker()
    with sessions.begin() as session:
        audience = get_owned(session, Audience, audience_id, workspace_id, "audience")
        try:
            destination = sync_destination(session, audience)
        except NotSyncable as exc:
            raise ApiError(400, str(exc)) from None
        try:
            claim_sync(session, audience.id)
        except SyncBusy as exc:
            raise ApiError(409, str(exc)) from None
        list_id = str((audience.sync_source or {})["list_id"])
    reader = KlaviyoListReader.for_destination(destination, get_settings())
    try:
        with klaviyo_errors():
            result: SyncResult = run_sync(sessions, audience_id, reader.members(list_id))
    finally:
        reader.close()
    with sessions() as session:
        return SyncOut(
            audience=_sync_result(session, audience_id),
            members=result.members,
            skipped=result.skipped,
        )
