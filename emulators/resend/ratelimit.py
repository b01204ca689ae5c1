"""Resend's rate limit: the kit's sliding-window limiter with Resend's headers and wording.

Resend allows a fixed number of requests per second per team and reports the budget
in ``ratelimit-*`` headers on every answer (the kit's default :data:`RATELIMIT_HEADERS`).
"""

from __future__ import annotations

from emulators.kit import RATELIMIT_HEADERS, Decision, RateLimiter, Window

__all__ = ["RATELIMIT_HEADERS", "Decision", "RateLimiter", "rate_limit_message"]


def rate_limit_message(rate: float) -> str:
    """Resend's wording for a 429, adapted to fractional rates."""
    window = Window.per_second(rate)
    if window.seconds == 1.0:
        allowance = f"{window.limit} request{'s' if window.limit != 1 else ''} per second"
    else:
        allowance = f"1 request every {window.seconds:g} seconds"
    return (
        f"Too many requests. You can only make {allowance}. "
        "See rate limit response headers for more information."
    )
