"""Check HTTP exchanges against Resend's published OpenAPI spec (``resend.yaml``).

Used two ways: the emulator's own tests validate every answer it gives, and connector
tests hook :func:`validate_exchange` into an ``httpx`` client to prove their real traffic
matches the contract (see :mod:`emulators.kit.contract`).

The spec documents success bodies only. Error answers of a documented operation are
checked against Resend's documented error shape instead (``statusCode``/``name``/
``message``). Paths or methods the spec does not have are not checked at all.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from openapi_core import Config, OpenAPI

from emulators.kit.contract import ContractViolation as ContractViolation
from emulators.kit.contract import ErrorShape, OpenApiContract

SPEC_PATH = Path(__file__).with_name("resend.yaml")

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["statusCode", "name", "message"],
    "properties": {
        "statusCode": {"type": "integer"},
        "name": {"type": "string", "pattern": "^[a-z][a-z_]*$"},
        "message": {"type": "string", "minLength": 1},
    },
}
"""Resend's error body, from its "Errors" documentation page."""


def _binary_as_text(value: bytes, **parameters: str) -> str:
    """Decode a binary part so OAS 3.1's ``type: string`` accepts it.

    openapi-core hands ``format: binary`` parts (the CSV ``file`` of an import) to the
    schema validator as ``bytes``, which JSON Schema 2020-12 never calls a string; this
    is a known openapi-core limitation with OAS 3.1 specs. Lossless decoding keeps the
    check meaningful (the part must exist and be a single value) without the false alarm.
    """
    return value.decode("utf-8", errors="surrogateescape")


@cache
def openapi() -> OpenAPI:
    """The parsed spec (loading takes about a second, so it is cached)."""
    config = Config(extra_media_type_deserializers={"application/octet-stream": _binary_as_text})
    return OpenAPI.from_file_path(str(SPEC_PATH), config=config)


ERRORS = ErrorShape(ERROR_SCHEMA, statuses=lambda body: [body["statusCode"]])
CONTRACT = OpenApiContract(lambda path: openapi(), errors=ERRORS)
in_spec, validate_request, validate_exchange = (
    CONTRACT.in_spec,
    CONTRACT.validate_request,
    CONTRACT.validate_exchange,
)
validate_error_body = ERRORS.check
