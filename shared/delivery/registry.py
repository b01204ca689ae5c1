"""Connector types by name, and building one for a stored destination."""

from __future__ import annotations

from typing import Any

from shared.config import Settings
from shared.db.models import Destination
from shared.delivery.base import HttpConnector
from shared.delivery.connector import Connector
from shared.delivery.http import RetryPolicy
from shared.delivery.resend import ResendConnector
from shared.secrets import decrypt_json

CONNECTORS: dict[str, type[HttpConnector]] = {
    connector.type: connector for connector in (ResendConnector,)
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
    CONNECTORS[type_].validate_config(config, credentials)


def build_connector(destination: Destination, settings: Settings) -> Connector:
    credentials = decrypt_json(destination.credentials_encrypted)
    connector_class = CONNECTORS[destination.type]
    return connector_class(destination.config, credentials, RetryPolicy.from_settings(settings))
