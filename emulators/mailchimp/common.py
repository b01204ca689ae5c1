"""Small helpers shared by the route modules."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emulators.kit import route_key

from .errors import fake_email, not_found
from .state import Account, MailchimpEmulator, MailingList

API = "/3.0"
"""Every Marketing API path starts with the version."""


def emulator_of(request: Request) -> MailchimpEmulator:
    """The emulator serving ``request``."""
    emulator: MailchimpEmulator = request.app.state.emulator
    return emulator


def account_of(request: Request) -> Account:
    """The account of the API key that authenticated ``request``."""
    return emulator_of(request).account_of(request)


def list_of(account: Account, list_id: str) -> MailingList:
    """The list ``list_id`` of ``account``, else 404."""
    lst = account.lists.get(list_id)
    if lst is None:
        raise not_found()
    return lst


def email_fault_checker(request: Request) -> Any:
    """A callable applying ``reject_emails`` fault rules to one address of this request.

    The emulator applies email rules in handlers (not the gate) so a rejected address gets
    Mailchimp's own wording when the rule has no message of its own, and so a batch fails
    only the rejected members.
    """
    emulator = emulator_of(request)
    route = route_key(request.scope)

    def check(email: str) -> None:
        rule = emulator.faults.for_email(email, route)
        if rule is None:
            return
        emulator.stats.faulted += 1
        if rule.default_message and rule.status == 400:
            raise fake_email(email)
        raise rule.email_error(email)

    return check


def json(body: dict[str, Any], status: int = 200) -> JSONResponse:
    """A JSON answer."""
    return JSONResponse(body, status_code=status)


def no_content() -> Response:
    """204, as Mailchimp answers deletes and tag updates."""
    return Response(status_code=204)
