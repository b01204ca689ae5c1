"""Diff planning: what a run must send, from the audience's members and the sync's state.

Both inputs are streams sorted by member key; the plan is a sorted merge, so memory stays flat
whatever the audience size. Let C be the current members and S the state:

- new: in C, not delivered in S;  changed: delivered, but the payload hash differs (or the last
  attempt failed);  exited: delivered in S, not in C.
- add sends new; upsert new + changed; remove exited; mirror all three.

Besides the operations that call the destination the plan yields bookkeeping steps, so the
executor can keep the state honest without a call: ``track`` (remove mode records who is in
the audience, so that it can later remove those who leave; it never adds anyone itself) and
``forget`` (a member that was never delivered has left the audience; drop its state row).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar


class SyncMode(StrEnum):
    ADD = "add"
    REMOVE = "remove"
    MIRROR = "mirror"
    UPSERT = "upsert"


class Op(StrEnum):
    ADD = "add"
    UPDATE = "update"
    REMOVE = "remove"
    UNCHANGED = "unchanged"
    TRACK = "track"
    FORGET = "forget"


CALLS_DESTINATION = frozenset({Op.ADD, Op.UPDATE, Op.REMOVE})


@dataclass(frozen=True, slots=True)
class Current:
    """One current member with its mapped payload."""

    key: str
    payload: dict[str, Any]
    payload_hash: str


@dataclass(frozen=True, slots=True)
class Delivered:
    """One row of sync state."""

    key: str
    payload_hash: str | None
    delivered: bool
    failed: bool
    destination_ref: str | None


@dataclass(frozen=True, slots=True)
class Change:
    op: Op
    key: str
    payload: dict[str, Any] | None = None
    payload_hash: str | None = None
    destination_ref: str | None = None


_Keyed = TypeVar("_Keyed", Current, Delivered)


class UnsortedInputError(ValueError):
    """An input stream was not sorted by key: the merge would be wrong, so stop."""


def plan_diff(
    current: Iterable[Current], state: Iterable[Delivered], mode: SyncMode
) -> Iterator[Change]:
    members = _checked(iter(current), "members")
    rows = _checked(iter(state), "sync state")
    member = next(members, None)
    row = next(rows, None)
    while member is not None or row is not None:
        if row is None or (member is not None and member.key < row.key):
            assert member is not None
            yield _only_current(member, mode)
            member = next(members, None)
        elif member is None or row.key < member.key:
            change = _only_state(row, mode)
            if change is not None:
                yield change
            row = next(rows, None)
        else:
            yield _both(member, row, mode)
            member = next(members, None)
            row = next(rows, None)


def _only_current(member: Current, mode: SyncMode) -> Change:
    op = Op.TRACK if mode is SyncMode.REMOVE else Op.ADD
    return Change(op, member.key, member.payload, member.payload_hash)


def _only_state(row: Delivered, mode: SyncMode) -> Change | None:
    if not row.delivered:
        return Change(Op.FORGET, row.key)
    if mode in (SyncMode.MIRROR, SyncMode.REMOVE):
        return Change(Op.REMOVE, row.key, destination_ref=row.destination_ref)
    return None


def _both(member: Current, row: Delivered, mode: SyncMode) -> Change:
    if not row.delivered:
        return _only_current(member, mode)
    stale = row.failed or row.payload_hash != member.payload_hash
    if not stale:
        return Change(Op.UNCHANGED, member.key)
    if mode in (SyncMode.UPSERT, SyncMode.MIRROR):
        op = Op.UPDATE
    elif mode is SyncMode.REMOVE:
        op = Op.TRACK
    else:
        op = Op.UNCHANGED
    return Change(op, member.key, member.payload, member.payload_hash, row.destination_ref)


def _checked(items: Iterator[_Keyed], name: str) -> Iterator[_Keyed]:
    previous: str | None = None
    for item in items:
        if previous is not None and item.key <= previous:
            raise UnsortedInputError(f"{name} not strictly sorted at key {item.key!r}")
        previous = item.key
        yield item
