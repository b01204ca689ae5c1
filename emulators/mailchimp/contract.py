"""Check HTTP exchanges against Mailchimp's documented shapes (:mod:`.schemas`).

Mailchimp publishes its reference as documentation, not a spec file we ship, so the
operations the emulator serves are transcribed into JSON schemas. Used two ways, like the
Resend contract: the emulator tests validate every answer, and connector tests hook
:func:`validate_exchange` into their ``httpx`` client to prove their real traffic matches
(see :mod:`emulators.kit.contract`).

Rules: an error answer (>= 400) must be ``application/problem+json`` with ``type``,
``title``, ``status`` (equal to the HTTP status), ``detail`` and ``instance``; a success must
have the documented status and body; a documented request body must match its schema
(undocumented properties included). Successes on undocumented paths are not checked.
"""

from __future__ import annotations

from emulators.kit.contract import ContractViolation as ContractViolation
from emulators.kit.contract import ErrorShape, Operation, SchemaContract, operation

from . import schemas as s

HASH = r"[0-9a-fA-F]{32}"
LIST = r"[^/]+"


def _op(
    method: str, path: str, request: s.Schema | None, responses: dict[int, s.Schema | None]
) -> Operation:
    return operation(method, f"/3\\.0{path}", responses, request)


MEMBER = f"/lists/{LIST}/members/{HASH}"
OPERATIONS = [
    _op("GET", "/ping", None, {200: s.PING_OUT}),
    _op("GET", "/lists", None, {200: s.page("lists", s.LIST_OUT)}),
    _op("POST", "/lists", s.LIST_IN, {200: s.LIST_OUT}),
    _op("GET", f"/lists/{LIST}", None, {200: s.LIST_OUT}),
    _op("POST", f"/lists/{LIST}", s.BATCH, {200: s.BATCH_OUT}),
    _op(
        "GET",
        f"/lists/{LIST}/merge-fields",
        None,
        {200: s.page("merge_fields", s.MERGE_FIELD_OUT, ["list_id"])},
    ),
    _op("POST", f"/lists/{LIST}/merge-fields", s.MERGE_FIELD_IN, {200: s.MERGE_FIELD_OUT}),
    _op("GET", f"/lists/{LIST}/merge-fields/[0-9]+", None, {200: s.MERGE_FIELD_OUT}),
    _op("GET", f"/lists/{LIST}/members", None, {200: s.page("members", s.MEMBER_OUT, ["list_id"])}),
    _op("POST", f"/lists/{LIST}/members", s.POST_MEMBER, {200: s.MEMBER_OUT}),
    _op("GET", MEMBER, None, {200: s.MEMBER_OUT}),
    _op("PUT", MEMBER, s.PUT_MEMBER, {200: s.MEMBER_OUT}),
    _op("PATCH", MEMBER, s.PATCH_MEMBER, {200: s.MEMBER_OUT}),
    _op("DELETE", MEMBER, None, {204: s.EMPTY}),
    _op("POST", MEMBER + "/actions/delete-permanent", None, {204: s.EMPTY}),
    _op("GET", MEMBER + "/tags", None, {200: s.TAGS_OUT}),
    _op("POST", MEMBER + "/tags", s.TAGS, {204: s.EMPTY}),
]


ERRORS = ErrorShape(
    s.PROBLEM, statuses=lambda body: [body["status"]], media_type="application/problem+json"
)
CONTRACT = SchemaContract(OPERATIONS, errors=ERRORS, all_errors=True)
operation_for, in_spec, validate_request, validate_exchange = (
    CONTRACT.operation_for,
    CONTRACT.in_spec,
    CONTRACT.validate_request,
    CONTRACT.validate_exchange,
)
validate_error = ERRORS.check
