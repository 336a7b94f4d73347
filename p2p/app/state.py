"""What one running app holds: the home, the unlocked identity, jobs and LAN.

The home's SQLite connection is shared by request handlers, so every library
call goes through `AppState.call`, which runs it in a worker thread under one
lock. Long jobs and the LAN node open their own connection (`worker_home`), so
a sync never blocks the pages; SQLite serialises their writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from p2p.errors import WrongPassphrase
from p2p.home import Home
from p2p.identity import Identity

T = TypeVar("T")


class LockedIdentity(WrongPassphrase):
    default = "your identity is locked: unlock it with your passphrase first"


class _Unlocked(Home):
    """A second connection to the same home, already holding the unlocked identity."""

    def __init__(self, path: Path, identity: Identity | None) -> None:
        super().__init__(path, _locked)
        self._identity = identity


def _locked(_creating: bool) -> str | None:
    raise LockedIdentity()


class AppState:
    def __init__(self, home_path: Path) -> None:
        self.home_path = Path(home_path)
        self._phrase: str | None = None  # set only for the instant of an unlock
        self.home = Home(self.home_path, self._provide)
        self.lock = threading.RLock()
        self.identity: Identity | None = None
        self.flashes: list[tuple[str, str]] = []  # shown once on the next page
        self.pending: dict[str, tuple[Path, bool, str | None]] = {}  # verified, not yet applied
        from p2p.app.jobs import Jobs
        from p2p.app.lan_node import LanControl

        self.jobs = Jobs(self)
        self.lan = LanControl(self)

    def _provide(self, _creating: bool) -> str | None:
        if self._phrase is None:
            raise LockedIdentity()
        return self._phrase

    # --- identity ---------------------------------------------------------------

    def unlocked(self) -> bool:
        """True once the keys are open: unprotected, held by a running unlock
        agent ('p2p unlock'), or unlocked in the app."""
        if self.identity is not None:
            return True
        with self.lock:
            if self.home.has_identity():
                try:
                    self.identity = self.home.identity  # asks the agent, not us
                except WrongPassphrase:
                    pass
        return self.identity is not None

    def unlock(self, phrase: str) -> None:
        """Unseal the keys with `phrase`; the phrase is dropped right after."""
        with self.lock:
            self._phrase = phrase
            try:
                self.identity = self.home.identity
            finally:
                self._phrase = None

    def lock_now(self) -> None:
        """Forget the unlocked keys (Wi-Fi sync stops: it signs with them)."""
        self.lan.stop()
        with self.lock:
            self.identity = None
            self.home.close()
            self.home = Home(self.home_path, self._provide)

    def create_identity(self, phrase: str | None) -> Identity:
        with self.lock:
            self.identity = self.home.create_identity(phrase)
        return self.identity

    # --- running library calls ----------------------------------------------------

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def run() -> T:
            with self.lock:
                return fn(*args, **kwargs)

        return await anyio.to_thread.run_sync(run)

    def worker_home(self) -> Home:
        """A separate connection for a job or the LAN node (its own thread)."""
        return _Unlocked(self.home_path, self.identity)

    def close(self) -> None:
        self.lan.stop()
        self.jobs.close()
        self.home.close()
