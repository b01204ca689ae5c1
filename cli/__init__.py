"""The ``audiencesync`` command line."""
