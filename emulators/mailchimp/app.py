"""The Mailchimp Marketing API v3 emulator as an ASGI app (plain Starlette via the kit).

Every path lives under ``/3.0`` as on ``https://<dc>.api.mailchimp.com/3.0``, so a client
configured with the emulator's URL as its host root sends exactly the paths it would send to
Mailchimp.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware

from . import api_lists, api_members, api_merge_fields
from .state import Latency, MailchimpEmulator


def create_app(
    rate: float = 100.0,
    api_keys: set[str] | None = None,
    datacenter: str | None = None,
    concurrency: int = 10,
) -> Starlette:
    """Build an emulator with its own in-memory state on ``app.state.emulator``.

    ``rate`` is requests per second per API key (Mailchimp publishes none; see
    :class:`MailchimpEmulator`), ``api_keys=None`` accepts any key shaped ``<hex>-<dc>``,
    ``datacenter`` refuses keys of other datacenters, ``concurrency`` is the simultaneous
    connection cap (Mailchimp's is 10).
    """
    emulator = MailchimpEmulator(
        rate=rate, api_keys=api_keys, datacenter=datacenter, concurrency=concurrency
    )
    return emulator.app(
        [*api_lists.ROUTES, *api_merge_fields.ROUTES, *api_members.ROUTES],
        middleware=[Middleware(Latency, emulator=emulator)],
    )
