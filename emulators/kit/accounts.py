"""Per-key service data: every emulated service treats each API key as its own account.

Two destinations configured with different keys must never see each other's data, so an
emulator keeps one account object per key, made on first use and dropped on
``POST /_emulator/reset``; ``GET /_emulator/accounts`` shows a summary of each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from starlette.requests import Request

from .emulator import Emulator
from .gate import account_key

AccountT = TypeVar("AccountT")


class AccountEmulator(Emulator, Generic[AccountT]):
    """An :class:`Emulator` whose data is one ``new_account()`` per API key.

    ``describe_account(account)`` is the account's entry in ``GET /_emulator/accounts``.
    Other keyword arguments go to :class:`Emulator` (``on_reset`` and
    ``describe_accounts`` are this class's own).
    """

    def __init__(
        self,
        *,
        new_account: Callable[[], AccountT],
        describe_account: Callable[[AccountT], Any],
        **kwargs: Any,
    ) -> None:
        super().__init__(
            on_reset=self._drop_accounts, describe_accounts=self._describe_accounts, **kwargs
        )
        self.new_account = new_account
        self.describe_account = describe_account
        self.accounts: dict[str, AccountT] = {}

    def account(self, key: str) -> AccountT:
        """The account of ``key``, created on first use."""
        with self.lock:
            account = self.accounts.get(key)
            if account is None:
                account = self.accounts[key] = self.new_account()
            return account

    def account_of(self, request: Request) -> AccountT:
        """The account of the key that authenticated ``request``."""
        return self.account(account_key(request))

    def _drop_accounts(self) -> None:
        self.accounts = {}

    def _describe_accounts(self) -> dict[str, Any]:
        return {key: self.describe_account(account) for key, account in self.accounts.items()}
