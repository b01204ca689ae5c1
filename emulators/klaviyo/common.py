"""Helpers every handler module uses: the emulator and account behind a request."""

from __future__ import annotations

from starlette.requests import Request

from .state import Account, KlaviyoEmulator


def emulator_of(request: Request) -> KlaviyoEmulator:
    emu: KlaviyoEmulator = request.app.state.emulator
    return emu


def account_of(request: Request) -> tuple[KlaviyoEmulator, Account]:
    emu = emulator_of(request)
    return emu, emu.account_of(request)
