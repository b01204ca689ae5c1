"""``python -m emulators.webhook``."""

from .cli import main

main()
