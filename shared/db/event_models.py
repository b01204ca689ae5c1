"""Tables for contact events and the per-contact audit trail."""

from __future__ import annotations
