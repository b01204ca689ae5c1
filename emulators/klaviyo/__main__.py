"""``python -m emulators.klaviyo``."""

from .cli import main

main()
