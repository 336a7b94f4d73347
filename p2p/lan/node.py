"""A LAN node: serve, announce, browse, and sync with whoever shows up.

`p2p serve` and the web app both run one of these. It listens on every up,
non-loopback address (or the given hosts), announces itself on each IPv4
network, keeps browsing, and syncs with every peer it discovers, again when
that peer announces a new token (it got new content), with exponential
backoff after failures. When its own store changes (a post typed beside it,
a session it applied), it announces a new token so that peers come to it.

    node = Node(home, on_event=print)
    await node.start()        # listening and announced; node.addresses, node.port
    ...
    await node.close()        # announcements withdrawn, sessions finished or cut

Events passed to `on_event` are plain dicts with an "event" key: "serving",
"session" (direction "in" or "out", plus SessionResult.as_json()), "stranger",
"failed", "log".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zeroconf import ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser

from p2p import atomic
from p2p import peers as known_peers
from p2p.errors import NoSharedCommunity, P2PError, SameIdentity
from p2p.home import Home
from p2p.lan import discovery, session
from p2p.lan.interfaces import lan_addresses
from p2p.lan.server import Server, summary, sync_with

Event = dict
BACKOFF_MAX = 60.0  # seconds between retries of a failing peer, at most
STRANGER_PAUSE = 300.0  # before trying again a peer that shares no community
POLL_EVERY = 2.0  # how often the store is checked for new content
RESCAN_EVERY = 5  # interfaces are listed again every this many polls


@dataclass
class _PeerState:
    host: str
    port: int
    token: str = ""
    synced_token: str | None = None
    failures: int = 0
    next_try: float = 0.0
    running: bool = False


class Node:
    def __init__(
        self,
        home: Home,
        *,
        hosts: list[str] | None = None,
        port: int = 7420,
        mdns: bool = True,
        auto_sync: bool = True,
        on_event: Callable[[Event], None] | None = None,
        io_timeout: float = 30.0,
        rotate_every: float | None = discovery.ROTATE_EVERY,
        token_file: Path | None = None,
        poll_every: float = POLL_EVERY,
    ) -> None:
        self.home = home
        self.requested_hosts = hosts
        self.port = port
        self.mdns = mdns
        self.auto_sync = auto_sync
        self.on_event = on_event or (lambda _e: None)
        self.io_timeout = io_timeout
        self.rotate_every = rotate_every
        self.token_file = token_file
        self.poll_every = poll_every
        self.addresses: list[str] = []
        self.server: Server | None = None
        self.announcers: list[discovery.Announcer] = []
        self._browsers: list[AsyncServiceBrowser] = []
        self._peers: dict[str, _PeerState] = {}
        self._tasks: set[asyncio.Task] = set()
        self._loop_task: asyncio.Task | None = None
        self._digest = b""
        self._closing = False
        self._held: list[Event] | None = []  # events before "serving" is out

    # --- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        optional: frozenset[str] = frozenset()
        if self.requested_hosts:
            hosts = list(self.requested_hosts)
        else:
            hosts = [a.host for a in lan_addresses()]
            optional = frozenset(h for h in hosts if ":" in h)
        if not hosts:
            hosts = ["127.0.0.1"]
            self._emit("log", "no network interface is up: serving on 127.0.0.1 only")
        self.server = Server(
            self.home,
            hosts,
            self.port,
            io_timeout=self.io_timeout,
            log=lambda m: self._emit("log", m),
            on_session=lambda r: self._session(r, "in", None),
        )
        self.port = await self.server.start(optional)
        self.addresses = self.server.hosts
        self._digest = self._content_digest()
        for host in self.addresses:
            await self._announce(host)
        self._write_tokens()
        where = ", ".join(_show(h, self.port) for h in self.addresses)
        self._emit(
            "serving",
            f"Serving on {where} "
            f"({'announced by mDNS' if self.announcers else 'without announcing'})"
            if where
            else "No network address is usable yet; serving as soon as one is (checked every 10 s)",
            addresses=self.addresses,
            port=self.port,
            mdns=bool(self.announcers),
        )
        if self.auto_sync:
            for host, port in known_peers.remembered(self.home):
                self._peers.setdefault(f"remembered {host}:{port}", _PeerState(host, port))
        self._loop_task = asyncio.create_task(self._loop())

    async def _announce(self, host: str) -> None:
        """On each IPv4 address; on an IPv6 link-local one only where its interface
        has no IPv4 address (one announcement per network, so one session per peer)."""
        if not self.mdns or host.startswith("127.") or host == "::1":
            return
        if ":" in host:
            iface = host.partition("%")[2]
            if not iface or any(
                a.interface == iface and not a.ipv6 for a in lan_addresses(ipv6=False)
            ):
                return
        ann = discovery.Announcer(host, self.port, rotate_every=self.rotate_every)
        await ann.start()
        self.announcers.append(ann)
        if self.auto_sync and ann.zeroconf is not None:
            self._browsers.append(self._browse(ann.zeroconf))

    async def _new_interfaces(self) -> None:
        """Listen and announce on addresses that appeared since (Wi-Fi joined later,
        an IPv6 address done with duplicate detection)."""
        if self.requested_hosts or self.server is None:
            return
        for a in lan_addresses():
            if a.host in self.addresses:
                continue
            try:
                await self.server.add_host(a.host)
            except OSError:
                continue
            self.addresses = self.server.hosts
            await self._announce(a.host)
            self._write_tokens()
            self._emit(
                "serving",
                f"Now also serving on {_show(a.host, self.port)}",
                addresses=self.addresses,
                port=self.port,
                mdns=bool(self.announcers),
            )

    async def close(self, grace: float = 5.0) -> None:
        self._closing = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for b in self._browsers:
            with contextlib.suppress(Exception):
                await b.async_cancel()
        for ann in self.announcers:
            await ann.close()
        if self.token_file is not None:
            self.token_file.unlink(missing_ok=True)
        if self._tasks:
            _done, late = await asyncio.wait(set(self._tasks), timeout=grace)
            for t in late:
                t.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self.server is not None:
            await self.server.close(grace)

    # --- events -----------------------------------------------------------------

    def _emit(self, kind: str, message: str, **data: object) -> None:
        event = {"event": kind, "message": message, **data}
        if self._held is not None and kind != "serving":
            self._held.append(event)  # a session may start while announcements are probed
            return
        self.on_event(event)
        if kind == "serving" and self._held is not None:
            held, self._held = self._held, None
            for e in held:
                self.on_event(e)

    def _session(self, r: session.SessionResult, direction: str, peer: str | None) -> None:
        self._emit("session", summary(r), direction=direction, peer_address=peer, **r.as_json())

    # --- discovery and syncing --------------------------------------------------

    def _own_tokens(self) -> set[str]:
        return {a.token for a in self.announcers}

    def _write_tokens(self) -> None:
        if self.token_file is not None:
            tokens = "\n".join(sorted(self._own_tokens())).encode()
            atomic.write_bytes(self.token_file, tokens, force=True)  # 0600, whatever the umask

    def _browse(self, zc: Zeroconf) -> AsyncServiceBrowser:
        def on_change(
            zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            if self._closing:
                return
            if state_change is ServiceStateChange.Removed:
                self._peers.pop(name, None)
                return
            self._spawn(self._resolve(zeroconf, name))

        return AsyncServiceBrowser(zc, [discovery.SERVICE_TYPE], handlers=[on_change])

    def _spawn(self, coro) -> None:  # noqa: ANN001
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, zc: Zeroconf, name: str) -> None:
        if any(a.name == name for a in self.announcers):
            return
        peer = await discovery.resolve(zc, name)
        if peer is None or peer.token in self._own_tokens():
            return
        self._peers.pop(f"remembered {peer.host}:{peer.port}", None)
        state = self._peers.setdefault(name, _PeerState(peer.host, peer.port))
        state.host, state.port, state.token = peer.host, peer.port, peer.token
        self._maybe_sync(name, state)

    def _maybe_sync(self, name: str, state: _PeerState) -> None:
        if state.running or self._closing or time.monotonic() < state.next_try:
            return
        if state.synced_token is not None and state.synced_token == state.token:
            return
        state.running = True
        self._spawn(self._sync(name, state))

    async def _sync(self, name: str, state: _PeerState) -> None:
        token = state.token
        where = _show(state.host, state.port)
        assert self.server is not None
        try:
            r = await sync_with(
                self.home,
                state.host,
                state.port,
                io_timeout=self.io_timeout,
                lock=self.server.lock,
            )
        except SameIdentity:
            state.synced_token, state.next_try = token, time.monotonic() + STRANGER_PAUSE
        except NoSharedCommunity:
            state.synced_token = token
            state.next_try = time.monotonic() + STRANGER_PAUSE
            self._emit("stranger", f"{where} shares no community with you", peer_address=where)
        except P2PError as exc:
            state.failures += 1
            delay = min(BACKOFF_MAX, 2.0**state.failures)
            state.next_try = time.monotonic() + delay
            self._emit(
                "failed",
                f"sync with {where} failed: {exc}; retrying in {delay:.0f} s",
                peer_address=where,
                error=str(exc),
            )
        else:
            state.synced_token, state.failures, state.next_try = token, 0, 0.0
            known_peers.remember(self.home, r.peer, state.host, state.port)
            self._session(r, "out", where)
        finally:
            state.running = False

    async def _loop(self) -> None:
        """Retry peers whose backoff ended; announce a new token when content changed."""
        rounds = 0
        while True:
            rounds += 1
            if rounds % RESCAN_EVERY == 0:
                await self._new_interfaces()
            for name, state in list(self._peers.items()):
                if state.failures or name.startswith("remembered "):
                    self._maybe_sync(name, state)
            digest = self._content_digest()
            if digest != self._digest:
                self._digest = digest
                for ann in self.announcers:
                    await ann.new_token()
                self._write_tokens()
            await asyncio.sleep(self.poll_every)

    def _content_digest(self) -> bytes:
        h = hashlib.sha256()
        for doc, heads in self.home.store.db.execute("SELECT id, heads FROM docs ORDER BY id"):
            h.update(doc + heads)
        return h.digest()


def _show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
