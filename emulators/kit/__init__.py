"""Service-independent building blocks of the emulators (see ``emulators/README.md``).

An emulator is an :class:`Emulator` (limiter, faults, stats, config, admin routes)
plus the service's :class:`ErrorFormat`, authenticator and routes.
"""

from .accounts import AccountEmulator
from .emulator import Authenticator, ConfigOption, Emulator, positive_number, seconds
from .errors import ApiError, BodyRenderer, ErrorFormat
from .faults import EmailExtractor, FaultRule, FaultSet, normalize_email, parse_rule
from .gate import (
    ACCOUNT_SCOPE,
    ADMIN_PREFIX,
    Gate,
    account_key,
    basic_credentials,
    bearer_token,
    route_key,
)
from .ratelimit import (
    RATELIMIT_HEADERS,
    RETRY_AFTER_ONLY,
    Decision,
    RateHeaders,
    RateLimiter,
    Window,
)
from .stats import Stats

__all__ = [
    "ACCOUNT_SCOPE",
    "ADMIN_PREFIX",
    "RATELIMIT_HEADERS",
    "RETRY_AFTER_ONLY",
    "AccountEmulator",
    "ApiError",
    "Authenticator",
    "BodyRenderer",
    "ConfigOption",
    "Decision",
    "EmailExtractor",
    "Emulator",
    "ErrorFormat",
    "FaultRule",
    "FaultSet",
    "Gate",
    "RateHeaders",
    "RateLimiter",
    "Stats",
    "Window",
    "account_key",
    "basic_credentials",
    "bearer_token",
    "normalize_email",
    "parse_rule",
    "positive_number",
    "route_key",
    "seconds",
]
