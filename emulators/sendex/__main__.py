"""``python -m emulators.sendex``."""

from .cli import main

main()
