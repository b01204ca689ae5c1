"""Audiences, sources, rules and CSV import."""
