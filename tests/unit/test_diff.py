"""The diff's four modes against a reference model of a destination.

The model applies a plan to a destination (a dict) and a sync state, and checks what a user
expects to find at the destination afterwards, for every mode, with failures injected; then
plans again and expects nothing left to send.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.diff import (
    CALLS_DESTINATION,
    Current,
    Delivered,
    Op,
    SyncMode,
    UnsortedInputError,
    plan_diff,
)

keys = st.sampled_from([f"user{i:02d}@example.com" for i in range(30)])
hashes = st.sampled_from(["h1", "h2", "h3"])


@dataclass
class StateRow:
    hash: str | None
    delivered: bool
    failed: bool


@dataclass
class World:
    members: dict[str, str]  # current audience: key -> payload hash
    destination: dict[str, str]  # what the destination holds because of this sync
    state: dict[str, StateRow]

    def plan(self, mode: SyncMode) -> list:
        current = [Current(k, {"h": h}, h) for k, h in sorted(self.members.items())]
        rows = [
            Delivered(k, r.hash, r.delivered, r.failed, f"ref-{k}")
            for k, r in sorted(self.state.items())
        ]
        return list(plan_diff(current, rows, mode))

    def apply(self, plan: list, failing: set[str]) -> None:
        for change in plan:
            key = change.key
            if change.op in CALLS_DESTINATION and key in failing:
                row = self.state.get(key)
                self.state[key] = StateRow(
                    row.hash if row else None, row.delivered if row else False, True
                )
            elif change.op in (Op.ADD, Op.UPDATE):
                self.destination[key] = change.payload_hash
                self.state[key] = StateRow(change.payload_hash, True, False)
            elif change.op is Op.REMOVE:
                self.destination.pop(key, None)
                self.state.pop(key)
            elif change.op is Op.TRACK:
                self.state[key] = StateRow(change.payload_hash, True, False)
            elif change.op is Op.FORGET:
                self.state.pop(key)


def consistent_world(draw: st.DrawFn) -> World:
    """A state that a previous run of the same sync could have left behind."""
    delivered = draw(st.dictionaries(keys, hashes))
    failed_new = draw(st.dictionaries(keys, hashes))
    state = {k: StateRow(h, True, draw(st.booleans())) for k, h in delivered.items()}
    for k in failed_new:
        state.setdefault(k, StateRow(None, False, True))
    members = draw(st.dictionaries(keys, hashes))
    return World(members, dict(delivered), state)


worlds = st.composite(consistent_world)()


@settings(max_examples=300, deadline=None)
@given(world=worlds, mode=st.sampled_from(list(SyncMode)), failing=st.sets(keys))
def test_each_mode_leaves_the_destination_as_its_definition_says(
    world: World, mode: SyncMode, failing: set[str]
) -> None:
    before = dict(world.destination)
    tracked_before = {k for k, r in world.state.items() if r.delivered}
    plan = world.plan(mode)
    assert [c.key for c in plan] == sorted(c.key for c in plan), "plan is in key order"
    world.apply(plan, failing)
    # Retries: the next run picks up exactly what failed, then nothing is left to send.
    retry = world.plan(mode)
    world.apply(retry, set())
    assert not [c for c in world.plan(mode) if c.op in CALLS_DESTINATION]

    members, dest = world.members, world.destination
    exited = tracked_before - members.keys()
    if mode is SyncMode.MIRROR:
        assert dest == members
    elif mode is SyncMode.UPSERT:
        assert all(dest[k] == h for k, h in members.items())
        assert dest.keys() == members.keys() | before.keys()
    elif mode is SyncMode.ADD:
        assert dest.keys() == members.keys() | before.keys()
        assert all(dest[k] == before[k] for k in before), "add never updates"
    else:
        assert dest == {k: h for k, h in before.items() if k not in exited}, "remove only removes"


@settings(max_examples=200, deadline=None)
@given(world=worlds, mode=st.sampled_from(list(SyncMode)))
def test_an_unchanged_audience_makes_no_calls_on_the_second_run(
    world: World, mode: SyncMode
) -> None:
    world.apply(world.plan(mode), set())
    second = world.plan(mode)
    assert not [c for c in second if c.op in CALLS_DESTINATION]


def test_counts_of_a_small_mirror() -> None:
    world = World(
        members={"a": "1", "b": "2", "c": "3"},
        destination={"b": "2", "c": "old", "d": "4"},
        state={
            "b": StateRow("2", True, False),
            "c": StateRow("old", True, False),
            "d": StateRow("4", True, False),
            "e": StateRow(None, False, True),
        },
    )
    ops = {c.key: c.op for c in world.plan(SyncMode.MIRROR)}
    assert ops == {"a": Op.ADD, "b": Op.UNCHANGED, "c": Op.UPDATE, "d": Op.REMOVE, "e": Op.FORGET}


def test_unsorted_input_is_refused() -> None:
    current = [Current("b", {}, "x"), Current("a", {}, "x")]
    with pytest.raises(UnsortedInputError):
        list(plan_diff(current, [], SyncMode.MIRROR))
