"""Local emulators of third-party services the sync engine talks to.

They exist because the real services cannot be reached from CI or from a developer's
machine without credentials; each emulator follows the provider's published API
contract closely enough that connector tests against it mean something.
"""
