"""Destination connectors and the delivery engine they share."""
