"""In-memory data of the Klaviyo emulator, and the emulator itself (auth, revision, limits).

Klaviyo scopes everything to the account a private key belongs to; the emulator treats each
key as its own account, so two destinations with different keys never see each other's data.
Request handlers run on the event loop while bulk import jobs run in worker threads, so all
reads and writes of account data hold :attr:`KlaviyoEmulator.lock`.

Decisions where Klaviyo's docs are silent:

* Keys: ``api_keys=None`` accepts any key starting with ``pk_`` (Klaviyo private keys do);
  a missing or differently-schemed ``Authorization`` is 401 ``not_authenticated``, an
  unknown key 401 ``authentication_failed``.
* ``revision`` is checked right after the key (before rate limits): missing, malformed
  (``YYYY-MM-DD[.suffix]``), before the first GA revision (2022-10-17) or after the bundled
  spec's revision is 400 ``invalid`` with ``source.parameter = "revision"``; nothing is
  charged to the rate limit.
* Rate limits are the spec's per-endpoint burst/steady windows (see :mod:`.specs`);
  ``RateLimit-Limit/Remaining/Reset`` go with every answer and ``Retry-After`` with 429s.
  ``rate`` only applies to the emulator's routes the spec gives no limit.
"""

from __future__ import annotations

import re
import secrets
import string
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from starlette.requests import Request

from emulators.kit import AccountEmulator, ApiError, ConfigOption, Decision, bearer_token, seconds

from .errors import KLAVIYO_ERRORS, api_error
from .specs import FIRST_REVISION, latest_revision, route_limits

_REVISION = re.compile(r"^(\d{4}-\d{2}-\d{2})(\.[a-z]+)?$")
_ID_ALPHABET = string.ascii_uppercase + string.digits


def timestamp() -> str:
    """Now, as Klaviyo writes date-times (ISO 8601 with offset)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def new_ulid() -> str:
    """A 26-character id shaped like Klaviyo's profile and job ids."""
    return "01" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def new_list_id() -> str:
    """A 6-character id shaped like Klaviyo's list ids (``Y6nRLr``)."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(6))


@dataclass
class Profile:
    id: str
    created: str
    updated: str
    attributes: dict[str, Any] = field(default_factory=dict)
    """``email``, ``phone_number``, ``external_id``, names, ``location``... as last written."""
    properties: dict[str, Any] = field(default_factory=dict)
    email_consent: str = "NEVER_SUBSCRIBED"
    email_consent_timestamp: str | None = None
    list_suppressions: list[dict[str, str]] = field(default_factory=list)


@dataclass
class KList:
    id: str
    name: str
    created: str
    updated: str
    opt_in_process: str = "single_opt_in"
    members: dict[str, str] = field(default_factory=dict)
    """Profile id -> when it joined (insertion ordered)."""


@dataclass
class ImportError_:
    """One profile a bulk import job could not import."""

    id: str
    code: str
    title: str
    detail: str
    pointer: str
    original_payload: dict[str, Any] | None


@dataclass
class ImportJob:
    id: str
    created_at: str
    profiles: list[dict[str, Any]]
    list_ids: list[str]
    status: str = "queued"
    completed_count: int = 0
    failed_count: int = 0
    started_at: str | None = None
    completed_at: str | None = None
    expires_at: str | None = None
    cancel_reason: str | None = None
    errors: list[ImportError_] = field(default_factory=list)
    profile_ids: list[str] = field(default_factory=list)

    @property
    def total_count(self) -> int:
        return len(self.profiles)


@dataclass
class Account:
    """Everything one private key can see."""

    profiles: dict[str, Profile] = field(default_factory=dict)
    by_identifier: dict[str, dict[str, str]] = field(
        default_factory=lambda: {"email": {}, "phone_number": {}, "external_id": {}}
    )
    """Identifier kind -> normalized value -> profile id."""
    lists: dict[str, KList] = field(default_factory=dict)
    jobs: dict[str, ImportJob] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "profiles": len(self.profiles),
            "lists": len(self.lists),
            "profile_bulk_import_jobs": len(self.jobs),
        }


class KlaviyoEmulator(AccountEmulator[Account]):
    """The kit's limiter, faults, stats and config plus Klaviyo's accounts and job workers."""

    def __init__(
        self,
        rate: float = 100.0,
        api_keys: set[str] | None = None,
        spec_limits: bool = True,
        import_rate: float | None = 5000.0,
        job_delay: float = 0.0,
    ) -> None:
        super().__init__(
            errors=KLAVIYO_ERRORS,
            authenticate=self._authenticate,
            rate=rate,
            route_limits=route_limits() if spec_limits else None,
            rate_limit_error=self._rate_limit_error,
            emails_of=_single_profile_emails,
            options=[
                ConfigOption("import_rate", lambda: self.import_rate, self._set_import_rate),
                ConfigOption.attribute(self, "job_delay", seconds),
                ConfigOption("cancel_jobs", lambda: self.cancel_jobs, self._set_cancel_jobs),
            ],
            new_account=Account,
            describe_account=Account.counts,
        )
        self.api_keys = set(api_keys) if api_keys is not None else None
        self.revision = latest_revision()
        self.import_rate = import_rate
        """Profiles per second a job processes (``None``: as fast as the machine goes)."""
        self.job_delay = job_delay
        """Seconds a new job stays ``queued`` (lets tests watch the lifecycle)."""
        self.cancel_jobs: str | None = None
        """When set, new jobs end ``cancelled`` with this reason on every profile."""
        self.job_threads: list[threading.Thread] = []

    def key_is_valid(self, api_key: str) -> bool:
        if self.api_keys is None:
            return api_key.startswith("pk_") and len(api_key) > 3
        return api_key in self.api_keys

    def _authenticate(self, request: Request) -> str:
        api_key = bearer_token(request.headers, "Klaviyo-API-Key")
        if api_key is None:
            raise api_error(
                401,
                "not_authenticated",
                "Missing or invalid authorization scheme. Please use Klaviyo-API-Key.",
            )
        if not self.key_is_valid(api_key):
            raise api_error(401, "authentication_failed", "Incorrect authentication credentials.")
        self._check_revision(request.headers.get("revision"))
        return api_key

    def _check_revision(self, value: str | None) -> None:
        if value is None or not value.strip():
            raise api_error(
                400, "invalid", "The `revision` header is required.", parameter="revision"
            )
        match = _REVISION.match(value.strip())
        day = match.group(1) if match else ""
        try:
            date.fromisoformat(day)
        except ValueError:
            day = ""
        if not day or not FIRST_REVISION <= day <= self.revision:
            raise api_error(
                400,
                "invalid",
                f"Invalid revision `{value}`. Revisions are dates (YYYY-MM-DD) from "
                f"{FIRST_REVISION} to {self.revision}.",
                parameter="revision",
            )

    def _rate_limit_error(self, decision: Decision) -> ApiError:
        seconds = decision.retry_after
        unit = "second" if seconds == 1 else "seconds"
        return api_error(
            429, "throttled", f"Request was throttled. Expected available in {seconds} {unit}."
        )

    def _set_import_rate(self, value: Any) -> None:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            raise ValueError("`import_rate` must be a positive number or null.")
        self.import_rate = float(value) if value is not None else None

    def _set_cancel_jobs(self, value: Any) -> None:
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError("`cancel_jobs` must be a reason (string) or null.")
        self.cancel_jobs = value

    def wait_for_jobs(self, timeout: float = 30.0) -> None:
        """Join the job workers started so far (a test helper)."""
        for thread in list(self.job_threads):
            thread.join(timeout)


def _single_profile_emails(route: str, body: Any) -> list[str]:
    """Emails a request writes as a whole: only ``POST /api/profile-import`` writes one
    profile per request; bulk endpoints reject emails per profile in their handlers."""
    if route != "POST /api/profile-import" or not isinstance(body, dict):
        return []
    data = body.get("data")
    attributes = data.get("attributes") if isinstance(data, dict) else None
    email = attributes.get("email") if isinstance(attributes, dict) else None
    return [email] if isinstance(email, str) else []


def new_error_id() -> str:
    return str(uuid.uuid4())
