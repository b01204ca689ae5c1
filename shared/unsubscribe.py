"""App-safe unsubscribe links: ``/unsubscribe?email=...&app=...&token=...``.

The token is ``{workspace_id}.{expires}.{signature}``: an HMAC-SHA256 over the workspace, the
lower-cased email, the app and the expiry, keyed by a key derived from the system's secret key
(``AUDIENCESYNC_SECRET_KEY``, or the generated key in the data directory) for this purpose
only. So a link works for one email and one app until it expires, nobody can make one for
someone else, and rotating the secret key voids every link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from shared.secrets import secret_key_text

PURPOSE = b"audiencesync/unsubscribe-link/v1"
DEFAULT_TTL_SECONDS = 365 * 24 * 3600


class InvalidLink(ValueError):
    """The token was not issued by this system for this email and app."""


class ExpiredLink(ValueError):
    """The token was issued by this system, but its time is over."""


@dataclass(frozen=True)
class UnsubscribeLink:
    url: str
    token: str
    expires_at: datetime


def _link_key() -> bytes:
    return hmac.new(secret_key_text().encode(), PURPOSE, hashlib.sha256).digest()


def _signature(workspace_id: str, email: str, app: str, expires: int) -> str:
    message = "\n".join((workspace_id, email.strip().lower(), app, str(expires))).encode()
    digest = hmac.new(_link_key(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue_token(
    workspace_id: str, email: str, app: str, ttl_seconds: int = DEFAULT_TTL_SECONDS
) -> tuple[str, datetime]:
    expires = int(time.time()) + ttl_seconds
    token = f"{workspace_id}.{expires}.{_signature(workspace_id, email, app, expires)}"
    return token, datetime.fromtimestamp(expires, UTC)


def issue_link(
    base_url: str, workspace_id: str, email: str, app: str, ttl_seconds: int = DEFAULT_TTL_SECONDS
) -> UnsubscribeLink:
    token, expires_at = issue_token(workspace_id, email, app, ttl_seconds)
    query = urlencode({"email": email.strip().lower(), "app": app, "token": token})
    return UnsubscribeLink(f"{base_url.rstrip('/')}/unsubscribe?{query}", token, expires_at)


def verify_token(token: str, email: str, app: str, now: float | None = None) -> str:
    """The workspace the token was issued in; raises ``InvalidLink`` or ``ExpiredLink``."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        raise InvalidLink("malformed unsubscribe token")
    workspace_id, expires_text, signature = parts
    expected = _signature(workspace_id, email, app, int(expires_text))
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise InvalidLink("this unsubscribe link was not issued for this email and app")
    if int(expires_text) < (time.time() if now is None else now):
        raise ExpiredLink("this unsubscribe link has expired")
    return workspace_id
