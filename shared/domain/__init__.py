"""The domain: members, rules, field mapping and diff planning. Knows nothing of HTTP or Celery."""
