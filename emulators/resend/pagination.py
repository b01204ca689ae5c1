"""Cursor pagination as Resend documents it.

Lists are newest first. ``after=<id>`` returns the page of items older than ``id``,
``before=<id>`` the page of newer items closest to ``id`` (still newest first); the
cursor itself is excluded and the two cannot be combined. Resend promises stable
pagination "even if new objects are created or deleted while you're still requesting
pages", so a cursor naming a deleted object keeps working: every index remembers the
position of everything it ever held.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from .errors import validation_error

#: Default page size Resend documents for endpoints that always paginate.
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


@dataclass(frozen=True)
class PageRequest:
    """Validated ``limit``/``after``/``before`` query parameters."""

    limit: int | None
    after: str | None = None
    before: str | None = None


def parse_page_request(query: Mapping[str, str], *, paginate_by_default: bool) -> PageRequest:
    """Validate pagination parameters, raising a 422 ``validation_error`` when wrong.

    ``paginate_by_default`` is False for Resend's older list endpoints (contacts,
    segments), which return everything when ``limit`` is absent; newer endpoints
    default to 20 items.
    """
    raw_limit = query.get("limit")
    limit: int | None
    if raw_limit is None or raw_limit == "":
        limit = DEFAULT_LIMIT if paginate_by_default else None
    else:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise validation_error("The `limit` parameter must be an integer.") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise validation_error(
                f"The `limit` parameter must be between 1 and {MAX_LIMIT}, got {limit}."
            )
    after = query.get("after") or None
    before = query.get("before") or None
    if after and before:
        raise validation_error("You can only use either `after` or `before`, not both.")
    if (after or before) and limit is None:
        # A cursor only makes sense for a paginated answer.
        limit = DEFAULT_LIMIT
    return PageRequest(limit=limit, after=after, before=before)


class OrderedIndex:
    """Ids in creation order with O(log n) cursor lookup and tombstoned positions."""

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._seqs: list[int] = []
        self._seq_of: dict[str, int] = {}
        self._next = 0

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        """Oldest first."""
        return iter(list(self._ids))

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, str) or item not in self._seq_of:
            return False
        i = bisect_left(self._seqs, self._seq_of[item])
        return i < len(self._ids) and self._ids[i] == item

    def add(self, item_id: str) -> None:
        """Append ``item_id`` as the newest item (no-op if present)."""
        if item_id in self:
            return
        self._seq_of[item_id] = self._next
        self._ids.append(item_id)
        self._seqs.append(self._next)
        self._next += 1

    def remove(self, item_id: str) -> None:
        """Remove ``item_id`` but remember its position for cursors."""
        seq = self._seq_of.get(item_id)
        if seq is None:
            return
        i = bisect_left(self._seqs, seq)
        if i < len(self._ids) and self._ids[i] == item_id:
            del self._ids[i]
            del self._seqs[i]

    def newest_first(self) -> list[str]:
        """All live ids, newest first."""
        return self._ids[::-1]

    def page(
        self,
        request: PageRequest,
        predicate: Callable[[str], bool] | None = None,
    ) -> tuple[list[str], bool]:
        """One page of ids (newest first) matching ``predicate`` and whether more exist."""
        keep = predicate or (lambda _id: True)
        limit = request.limit
        if request.before is not None:
            start = bisect_right(self._seqs, self._cursor_seq(request.before, "before"))
            found: list[str] = []
            for i in range(start, len(self._ids)):
                if keep(self._ids[i]):
                    found.append(self._ids[i])
                    if limit is not None and len(found) > limit:
                        break
            has_more = limit is not None and len(found) > limit
            return found[:limit][::-1], has_more
        if request.after is not None:
            start = bisect_left(self._seqs, self._cursor_seq(request.after, "after")) - 1
        else:
            start = len(self._ids) - 1
        found = []
        for i in range(start, -1, -1):
            if keep(self._ids[i]):
                found.append(self._ids[i])
                if limit is not None and len(found) > limit:
                    break
        has_more = limit is not None and len(found) > limit
        return found[:limit], has_more

    def _cursor_seq(self, cursor: str, param: str) -> int:
        seq = self._seq_of.get(cursor)
        if seq is None:
            raise validation_error(
                f"The `{param}` cursor `{cursor}` does not match any object in this list."
            )
        return seq
