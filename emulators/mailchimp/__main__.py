"""``python -m emulators.mailchimp``."""

from .cli import main

main()
