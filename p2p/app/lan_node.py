"""'Sync on this Wi-Fi': the library's LAN `Node` (serve, announce, browse and
sync with whoever shows up) running in a thread with its own event loop and
its own connection to the home, plus one-off syncs with an address the user
types (for networks where discovery is blocked)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from p2p import peers as known_peers
from p2p.errors import P2PError
from p2p.home import Home
from p2p.lan.node import Node
from p2p.lan.server import sync_with

if TYPE_CHECKING:
    from p2p.app.state import AppState

KEEP = 20
PORT = 7420  # the usual port; any free one when it is taken (say, by 'p2p serve')


@dataclass
class LanControl:
    state: AppState
    host: str | None = None  # None: every LAN address of this machine
    mdns: bool = True
    port: int = PORT
    running: bool = False
    addresses: list[str] = field(default_factory=list)
    sessions: list[dict] = field(default_factory=list)  # newest first, Node "session" events
    seen: dict[str, float] = field(default_factory=dict)  # "host:port" -> when
    log: list[str] = field(default_factory=list)
    version: int = 0
    _node: Node | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _home: Home | None = None
    _stop: asyncio.Event | None = None

    def _bump(self) -> None:
        self.version += 1

    def _event(self, e: dict) -> None:
        kind = e.get("event")
        if kind == "session":
            self.sessions = ([{**e, "ok": True, "at": time.time()}] + self.sessions)[:KEEP]
        elif kind in ("failed", "stranger"):
            self.sessions = ([{**e, "ok": False, "at": time.time()}] + self.sessions)[:KEEP]
        elif kind == "log":
            self.log = (self.log + [str(e.get("message", ""))])[-KEEP:]
        where = e.get("peer_address")
        if where:
            self.seen[str(where)] = time.time()
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
        ready.wait(60)
        if failure:
            raise failure[0]

    def _node_for(self, port: int) -> Node:
        assert self._home is not None
        return Node(
            self._home,
            hosts=[self.host] if self.host else None,
            port=port,
            mdns=self.mdns,
            on_event=self._event,
            token_file=self.state.home_path / "serve.token",
        )

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            node = self._node_for(self.port)
            try:
                try:
                    await node.start()
                except OSError:
                    if not self.port:
                        raise
                    await node.close()
                    node = self._node_for(0)
                    await node.start()
            except (OSError, P2PError) as exc:
                failure.append(exc)
                with contextlib.suppress(Exception):
                    await node.close()
                ready.set()
                return
            self._node = node
            self.addresses = [f"{h}:{node.port}" for h in node.addresses]
            self.running = True
            self._bump()
            ready.set()
            try:
                await self._stop.wait()
            finally:
                await node.close()
                self.running = False
                self._node = None
                self._bump()

        try:
            asyncio.run(main())
        finally:
            ready.set()
            if self._home is not None:
                self._home.close()
                self._home = None

    def sync(self, host: str, port: int, timeout: float = 300.0) -> dict:
        """One session with HOST:PORT (blocks the caller's thread, not the node)."""
        if self._loop is None or self._node is None or not self.running:
            raise P2PError("Wi-Fi sync is off: start it first")
        node = self._node
        where = f"{host}:{port}"

        async def one() -> dict[str, Any]:
            assert self._home is not None and node.server is not None
            try:
                r = await sync_with(self._home, host, port, lock=node.server.lock)
            except P2PError as exc:
                return {"event": "failed", "peer_address": where, "error": str(exc)}
            known_peers.remember(self._home, r.peer, host, port)
            return {"event": "session", "direction": "out", "peer_address": where, **r.as_json()}

        e = asyncio.run_coroutine_threadsafe(one(), self._loop).result(timeout)
        self._event(e)
        return e

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self.running:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=20)
            self._thread = None
