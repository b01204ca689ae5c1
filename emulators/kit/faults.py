"""Fault injection, so connector tests can exercise retries and error handling.

Rules are added with ``POST /_emulator/faults`` and dropped with ``DELETE``. A rule
either fails whole requests (counted, until cleared, or at random) or rejects writes of
particular email addresses. A request-level fault is answered before any handler runs,
so it changes no data, exactly like a request the real service failed.

Email rules are checked in two places, because services differ in what one request
writes: the gate checks the emails a service's :data:`EmailExtractor` finds in a JSON
body (one contact per request), and handlers of batch or import endpoints call
:meth:`FaultSet.for_email` per item so only that item fails.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, ErrorFormat

EmailExtractor = Callable[[str, Any], Iterable[str]]
"""``(route key, parsed JSON body) -> emails`` the request would write."""


def normalize_email(email: str) -> str:
    """Emails match case-insensitively and without surrounding blanks."""
    return email.strip().lower()


@dataclass
class FaultRule:
    """One injected failure pattern.

    Exactly one trigger applies: ``reject_emails`` (writes of those emails),
    ``probability`` (that share of requests, at random) or otherwise a count
    (``remaining`` requests, or every request until cleared when ``None``).
    ``route`` optionally narrows the rule to one route key such as ``"POST /contacts"``.
    """

    status: int
    name: str
    """The error code the service renders (Resend ``name``, Klaviyo ``code``...)."""
    message: str
    remaining: int | None = None
    probability: float | None = None
    reject_emails: frozenset[str] | None = None
    route: str | None = None
    retry_after: int | None = None
    default_message: bool = True
    """Whether ``message`` is the format's default (then email errors name the address)."""

    def error(self) -> ApiError:
        """The error this rule answers with."""
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            headers["retry-after"] = str(self.retry_after)
        return ApiError(self.status, self.name, self.message, headers)

    def email_error(self, email: str) -> ApiError:
        """The error for a rejected write of ``email``; the message names the address."""
        message = self.message
        if self.default_message:
            message = f"The email address `{email}` was rejected: {self.message}"
        return ApiError(self.status, self.name, message)

    def describe(self) -> dict[str, Any]:
        """JSON-ready view for ``GET /_emulator/faults``."""
        return {
            "status": self.status,
            "name": self.name,
            "message": self.message,
            "count": self.remaining,
            "fail_probability": self.probability,
            "reject_emails": sorted(self.reject_emails) if self.reject_emails else None,
            "route": self.route,
        }


def parse_rule(body: Any, errors: ErrorFormat) -> FaultRule:
    """Build a rule from the admin endpoint's JSON, raising ``ValueError`` when malformed.

    ``errors`` supplies the service's default code and message for the status.
    """
    if not isinstance(body, dict):
        raise ValueError("the fault must be a JSON object")
    status = body.get("status", 500)
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
        raise ValueError("`status` must be an HTTP error status (400-599)")
    name = str(body.get("name") or errors.code_for(status))
    default = errors.messages.get(name, f"Injected fault ({status} {name}).")
    message = str(body.get("message") or default)
    count = body.get("count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise ValueError("`count` must be a positive integer")
    probability = body.get("fail_probability")
    if probability is not None and (
        not isinstance(probability, int | float) or not 0 <= probability <= 1
    ):
        raise ValueError("`fail_probability` must be a number between 0 and 1")
    emails = body.get("reject_emails")
    reject: frozenset[str] | None = None
    if emails is not None:
        if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
            raise ValueError("`reject_emails` must be a list of strings")
        reject = frozenset(normalize_email(e) for e in emails)
    route = body.get("route")
    if route is not None and not isinstance(route, str):
        raise ValueError("`route` must be a string such as 'POST /contacts'")
    retry_after = body.get("retry_after")
    if retry_after is None and status in (429, 503):
        retry_after = 1
    if retry_after is not None and (not isinstance(retry_after, int) or retry_after < 0):
        raise ValueError("`retry_after` must be a non-negative integer")
    return FaultRule(
        status=status,
        name=name,
        message=message,
        remaining=count,
        probability=float(probability) if probability is not None else None,
        reject_emails=reject,
        route=route,
        retry_after=retry_after,
        default_message=message == default,
    )


class FaultSet:
    """The active rules (first match wins) and the seedable dice; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self.random = random.Random()
        """Drives ``fail_probability``; ``POST /_emulator/config {"seed": n}`` seeds it."""

    def add(self, rule: FaultRule) -> None:
        """Activate ``rule`` after the existing ones."""
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        """Deactivate every rule."""
        with self._lock:
            self._rules.clear()

    def describe(self) -> list[dict[str, Any]]:
        """JSON-ready view of the active rules."""
        with self._lock:
            return [rule.describe() for rule in self._rules]

    def has_email_rules(self) -> bool:
        """Whether any rule rejects emails (lets the gate skip reading bodies otherwise)."""
        with self._lock:
            return any(rule.reject_emails is not None for rule in self._rules)

    def for_request(self, route: str) -> FaultRule | None:
        """The rule that fails this request, consuming one use of a counted rule."""
        with self._lock:
            for rule in self._rules:
                if rule.reject_emails is not None:
                    continue
                if rule.route is not None and rule.route != route:
                    continue
                if rule.probability is not None:
                    if self.random.random() < rule.probability:
                        return rule
                    continue
                if rule.remaining is None:
                    return rule
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._rules.remove(rule)
                return rule
            return None

    def for_email(self, email: str, route: str | None = None) -> FaultRule | None:
        """The rule that rejects writes of ``email`` (on ``route``, when given), if any.

        With ``route=None`` a rule's own ``route`` is ignored, for callers (such as a
        background import) that have no request route.
        """
        needle = normalize_email(email)
        with self._lock:
            for rule in self._rules:
                if rule.reject_emails is None or needle not in rule.reject_emails:
                    continue
                if route is not None and rule.route is not None and rule.route != route:
                    continue
                return rule
            return None
