"""Connector types by name, and building one for a stored destination."""

from __future__ import annotations

import json
from typing import Any

from shared.config import Settings
from shared.db.models import Destination
from shared.delivery.base import HttpConnector
from shared.delivery.http import RetryPolicy
from shared.delivery.klaviyo import KlaviyoConnector
from shared.delivery.limiter import AccountLimiter, account_key
from shared.delivery.mailchimp import MailchimpConnector
from shared.delivery.resend import ResendConnector
from shared.delivery.sendex import SendexConnector
from shared.delivery.webhook import WebhookConnector
from shared.secrets import decrypt_json

CONNECTORS: dict[str, type[HttpConnector]] = {
    connector.type: connector
    for connector in (
        ResendConnector,
        MailchimpConnector,
        KlaviyoConnector,
        SendexConnector,
        WebhookConnector,
    )
}


def validate_destination(type_: str, config: dict[str, Any], credentials: dict[str, Any]) -> None:
    """Raise ``ValueError`` with a user-facing reason when the settings cannot work."""
    if type_ not in CONNECTORS:
        raise ValueError(f"unknown destination type {type_!r}; one of {sorted(CONNECTORS)}")
    base_url = config.get("base_url")
    if base_url is not None and (
        not isinstance(base_url, str) or not base_url.startswith(("http://", "https://"))
    ):
        raise ValueError("config.base_url must be an http(s) URL")
    rate = config.get("rate_limit")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0
    ):
        raise ValueError("config.rate_limit must be a positive number of requests per second")
    connections = config.get("max_connections")
    if connections is not None:
        cap = CONNECTORS[type_].max_concurrency
        if cap is None:
            raise ValueError(
                f"{type_} has no connection limit; config.max_connections does not apply"
            )
        if (
            isinstance(connections, bool)
            or not isinstance(connections, int)
            or not (1 <= connections <= cap)
        ):
            raise ValueError(f"config.max_connections must be a whole number from 1 to {cap}")
    CONNECTORS[type_].validate_config(config, credentials)


def build_connector(destination: Destination, settings: Settings) -> HttpConnector:
    credentials = decrypt_json(destination.credentials_encrypted)
    connector_class = CONNECTORS[destination.type]
    connector = connector_class(
        destination.config, credentials, RetryPolicy.from_settings(settings)
    )
    if settings.redis_url:
        base_url = connector_class.base_url(destination.config, credentials)
        secret = json.dumps(credentials, sort_keys=True)
        connector.client.limiter = AccountLimiter(
            settings.redis_url,
            account_key(destination.type, base_url, secret),
            rate=float(destination.config.get("rate_limit") or connector_class.default_rate),
            concurrency=connector.connections if connector_class.max_concurrency else None,
            routes=connector_class.route_limits,
        )
    return connector
