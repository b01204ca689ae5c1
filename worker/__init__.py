"""The Celery app and its tasks: thin shells around ``shared`` domain functions."""
