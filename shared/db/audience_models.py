"""Tables for audiences beyond rules: static lists, imports, synced lists, groups."""

from __future__ import annotations
