"""Secrets at rest: destination credentials (Fernet) and workspace API tokens (SHA-256).

The Fernet key comes from ``AUDIENCESYNC_SECRET_KEY``. When it is unset (the embedded default), a
key is generated once and kept in the data directory, readable by the owner only, so that a
restarted process can still read what an earlier one wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from shared.config import get_settings

TOKEN_PREFIX = "as_"


class SecretKeyError(RuntimeError):
    """The configured key cannot decrypt what is stored (it changed, or it is malformed)."""


def secret_key_text() -> str:
    """The system's secret key: configured, or generated once into the data directory."""
    settings = get_settings()
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / "secret.key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_text().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(Fernet.generate_key().decode())
    return path.read_text().strip()


@lru_cache
def _fernet() -> Fernet:
    key = secret_key_text()
    try:
        return Fernet(key.encode())
    except ValueError as exc:
        raise SecretKeyError("AUDIENCESYNC_SECRET_KEY is not a valid Fernet key") from exc


def encrypt_json(value: dict[str, Any]) -> str:
    return _fernet().encrypt(json.dumps(value, sort_keys=True).encode()).decode()


def decrypt_json(token: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken as exc:
        raise SecretKeyError("stored credentials cannot be decrypted with the current key") from exc
    return data


def new_api_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def mask(value: str) -> str:
    """What may be shown of a secret: its last four characters."""
    return "****" + value[-4:] if len(value) > 8 else "****"
