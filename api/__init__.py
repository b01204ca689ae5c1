"""The HTTP API: validates, authenticates, writes config rows, enqueues runs. No sync logic."""
