"""'Sync on this Wi-Fi': the LAN server (and its mDNS announcement) running in
a thread with its own event loop and its own connection to the home, plus
one-off syncs with a peer the user names or mDNS finds."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from p2p.errors import P2PError
from p2p.home import Home
from p2p.lan import discovery, session
from p2p.lan.server import Server, default_address, sync_with

if TYPE_CHECKING:
    from p2p.app.state import AppState

KEEP = 20


@dataclass
class Session:
    at: float
    peer: str
    ok: bool
    result: session.SessionResult | None = None
    error: str = ""


@dataclass
class LanControl:
    state: AppState
    host: str | None = None  # None: this machine's LAN address
    mdns: bool = True
    running: bool = False
    address: str = ""
    sessions: list[Session] = field(default_factory=list)
    seen: dict[str, float] = field(default_factory=dict)  # "host:port" -> when
    log: list[str] = field(default_factory=list)
    version: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _home: Home | None = None
    _stop: asyncio.Event | None = None

    def _bump(self) -> None:
        self.version += 1

    def _note(self, s: Session) -> None:
        self.sessions = ([s] + self.sessions)[:KEEP]
        self._bump()

    def start(self) -> None:
        if self.running:
            return
        ready = threading.Event()
        failure: list[BaseException] = []
        self._home = self.state.worker_home()
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), name="p2p-lan", daemon=True
        )
        self._thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        async def main() -> None:
            assert self._home is not None
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            host = self.host or default_address()
            server = Server(
                self._home,
                host,
                0,
                log=self._log,
                on_session=lambda r: self._note(Session(time.time(), _fp(r.peer), True, r)),
            )
            announcer = None
            try:
                port = await server.start()
                if self.mdns:
                    announcer = discovery.Announcer(
                        host, port, token_file=self.state.home_path / "serve.token"
                    )
                    await announcer.start()
            except (OSError, P2PError) as exc:
                failure.append(exc)
                await server.close()
                ready.set()
                return
            self.address, self.running = f"{host}:{port}", True
            self._bump()
            ready.set()
            try:
                await self._stop.wait()
            finally:
                if announcer is not None:
                    await announcer.close()
                await server.close()
                self.running = False
                self._bump()

        try:
            asyncio.run(main())
        finally:
            ready.set()
            if self._home is not None:
                self._home.close()
                self._home = None

    def _log(self, line: str) -> None:
        self.log = (self.log + [line])[-KEEP:]
        self._bump()

    def _submit(self, coro: Any) -> Future:
        if self._loop is None or not self.running:
            raise P2PError("Wi-Fi sync is off: start it first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def sync(self, host: str, port: int, timeout: float = 120.0) -> Session:
        """Run one session with HOST:PORT (blocking the caller's thread, not the loop)."""

        async def one() -> Session:
            assert self._home is not None
            try:
                r = await sync_with(self._home, host, port)
            except P2PError as exc:
                return Session(time.time(), f"{host}:{port}", False, error=str(exc))
            return Session(time.time(), f"{host}:{port}", True, r)

        s = self._submit(one()).result(timeout)
        self._note(s)
        return s

    def browse(self, timeout: float = 3.0) -> list[str]:
        """Peers announcing themselves on this network now (mDNS)."""
        host = (self.address.rsplit(":", 1)[0]) if self.address else default_address()

        async def look() -> list[str]:
            found = await discovery.browse(
                host, timeout, discovery.own_tokens(self.state.home_path / "serve.token")
            )
            return [f"{p.host}:{p.port}" for p in found]

        peers = self._submit(look()).result(timeout + 30)
        now = time.time()
        for p in peers:
            self.seen[p] = now
        self._bump()
        return peers

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self.running:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None


def _fp(key: bytes) -> str:
    from p2p.identity import fingerprint

    return fingerprint(key)
