"""``python -m emulators.resend``."""

from .cli import main

main()
