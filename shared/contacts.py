"""Writing to the built-in contact store."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import Contact

CONTACT_FIELDS = ("first_name", "last_name", "phone", "user_id", "last_active_at", "properties")


def upsert_contacts(session: Session, workspace_id: str, rows: Iterable[Mapping[str, Any]]) -> int:
    """Create or update contacts by (workspace, lower-cased email); returns rows written."""
    written = 0
    for row in rows:
        email = str(row["email"]).strip().lower()
        contact = session.execute(
            select(Contact).where(Contact.workspace_id == workspace_id, Contact.email == email)
        ).scalar_one_or_none()
        if contact is None:
            contact = Contact(workspace_id=workspace_id, email=email, properties={})
            session.add(contact)
        for name in CONTACT_FIELDS:
            if name in row:
                value = row[name]
                if name == "last_active_at" and isinstance(value, str):
                    value = datetime.fromisoformat(value)
                setattr(contact, name, value)
        written += 1
    session.flush()
    return written
