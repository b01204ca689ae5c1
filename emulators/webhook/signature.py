"""Signature checks of the receiver, written from ``docs/webhooks.md`` and not shared with
the connector, so a connector bug cannot hide behind a receiver with the same bug."""

from __future__ import annotations

import hashlib
import hmac

from emulators.kit import ApiError

DEFAULT_TOLERANCE = 300.0  # seconds: "older than 5 minutes" is stale


def verify(
    secret: str,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> None:
    """Raise a 401 :class:`ApiError` unless the headers sign ``body`` freshly with ``secret``.

    The signature header may list several ``v1=`` values separated by commas (as during a
    secret rotation); one match is enough. Timestamps more than ``tolerance`` seconds away
    from ``now``, in either direction, are refused so a captured request cannot be replayed.
    """
    if not timestamp_header or not signature_header:
        raise ApiError(
            401,
            "missing_signature",
            "X-AudienceSync-Timestamp and X-AudienceSync-Signature are required.",
        )
    try:
        timestamp = int(timestamp_header.strip())
    except ValueError:
        raise ApiError(401, "invalid_timestamp", "The timestamp is not Unix seconds.") from None
    if abs(now - timestamp) > tolerance:
        raise ApiError(
            401,
            "stale_timestamp",
            f"The timestamp is more than {tolerance:g} seconds away from the receiver's clock.",
        )
    expected = hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    for part in signature_header.split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme == "v1" and hmac.compare_digest(value.strip(), expected):
            return
    raise ApiError(401, "invalid_signature", "No v1 signature matches the body.")
