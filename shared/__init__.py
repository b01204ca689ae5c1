"""Code that the API, the workers and the scheduler share: settings, database, domain."""
