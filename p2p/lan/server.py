"""Serving and initiating sync sessions over TCP.

Two pools. A connection starts in the small pre-authentication pool, where it
has HANDSHAKE_TIMEOUT seconds to finish the Noise handshake and prove that it
shares a community; when that pool is full the oldest waiting connection is
dropped, so connections held open by strangers cannot keep out a peer that
completes its proof quickly. Only then does it take a slot of the session
pool, with its own per-address limit. Writes to the store are serialised by
one lock (SQLite has one writer anyway).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from p2p.errors import (
    HandshakeFailed,
    LanError,
    NoSharedCommunity,
    P2PError,
    PeerDisconnected,
    PeerTimeout,
)
from p2p.home import Home
from p2p.lan import channel as ch
from p2p.lan import session

SESSION_DEADLINE = 300.0
MAX_SESSIONS = 16  # authenticated sessions at once
MAX_PER_ADDRESS = 4  # authenticated sessions from one address
PREAUTH_TOTAL = 64  # connections still proving themselves; the oldest is dropped beyond
PREAUTH_PER_ADDRESS = 8  # of those, from one address; more are refused at once
STREAM_LIMIT = 64 * 1024  # asyncio read buffer per connection
NEW_PER_SECOND = 2.0  # new connections per address per second, sustained
NEW_BURST = 8.0  # ... and in a burst
MAX_TRACKED = 4096  # addresses whose connection rate is tracked at once
HANDSHAKE_HARD_LIMIT = 30.0  # the handshake budget grows with our own lag, up to this
LAG_TICK = 0.02  # how often the event loop's lateness is sampled
RETRIES = 2  # sync_with: tries again a peer that dropped us before the proof ...
RETRY_PAUSE = 1.0  # ... after this many seconds, then twice that
# phases before either side proved a shared community: a drop there exchanged nothing
RETRY_PHASES = ("", "handshake", "membership", "identity")

Log = Callable[[str], None]


def default_address() -> str:
    """The first IPv4 address of an up, non-loopback interface (no route needed),
    else 127.0.0.1. Kept for callers that want one address; `Node` uses them all."""
    from p2p.lan.interfaces import lan_addresses

    found = lan_addresses(ipv6=False)
    return found[0].ip if found else "127.0.0.1"


@dataclass
class Stats:
    accepted: int = 0
    refused_address: int = 0  # over PREAUTH_PER_ADDRESS
    refused_rate: int = 0  # over NEW_PER_SECOND / NEW_BURST
    evicted: int = 0  # oldest pre-auth connection dropped for a new one
    failed_preauth: int = 0  # handshake/proof failed or too slow
    proved: int = 0  # proved a shared community and its identity
    strangers: int = 0  # proved no shared community
    refused_busy: int = 0  # authenticated but the session pool was full
    sessions: int = 0  # completed sessions


@dataclass
class Server:
    home: Home
    host: str | list[str]
    port: int = 0
    io_timeout: float = 30.0
    deadline: float = SESSION_DEADLINE
    handshake_timeout: float = ch.HANDSHAKE_TIMEOUT
    log: Log = field(default=lambda _m: None)
    on_session: Callable[[session.SessionResult], None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    results: list[session.SessionResult] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    _servers: list[asyncio.AbstractServer] = field(default_factory=list)
    _active: set[asyncio.Task] = field(default_factory=set)
    _preauth: collections.OrderedDict = field(default_factory=collections.OrderedDict)
    _preauth_per_address: collections.Counter = field(default_factory=collections.Counter)
    _sessions_per_address: collections.Counter = field(default_factory=collections.Counter)
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _last_preauth_log: float = -1e9
    _lag: float = 0.0  # seconds the event loop ran late, in total (`_watch_lag`)
    _tick_due: float | None = None
    _ticker: asyncio.TimerHandle | None = None
    _quiet: int = 0

    @property
    def hosts(self) -> list[str]:
        return [self.host] if isinstance(self.host, str) else list(self.host)

    async def start(self, optional: frozenset[str] = frozenset()) -> int:
        """Listen on every host, all on one port (the first bound picks it if 0).
        Hosts in `optional` that cannot be bound yet (an IPv6 address still in
        duplicate detection) are left out of `host`; `add_host` can add them later."""
        bound: list[str] = []
        try:
            for h in self.hosts:
                try:
                    await self.add_host(h)
                except OSError:
                    if h not in optional:
                        raise
                    continue
                bound.append(h)
        except BaseException:
            for srv in self._servers:
                srv.close()
            raise
        self.host = bound
        self._watch_lag()
        return self.port

    async def add_host(self, host: str) -> None:
        listener = await asyncio.start_server(
            self._handle, host, self.port, limit=STREAM_LIMIT, reuse_address=True
        )
        self._servers.append(listener)
        self.port = listener.sockets[0].getsockname()[1]
        if isinstance(self.host, list) and host not in self.host:
            self.host.append(host)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if peer else "?"
        if self._preauth_per_address[address] >= PREAUTH_PER_ADDRESS:
            self.stats.refused_address += 1
            writer.close()
            return
        if not self._admit(address):
            self.stats.refused_rate += 1
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._active.add(task)
        task.add_done_callback(self._active.discard)
        while len(self._preauth) >= PREAUTH_TOTAL:
            oldest = next(iter(self._preauth))
            _addr, oldest_writer = self._preauth[oldest]
            self._leave_preauth(oldest)
            self.stats.evicted += 1
            oldest_writer.transport.abort()  # its handler sees the connection break
        self._preauth[task] = (address, writer)
        self._preauth_per_address[address] += 1
        self.stats.accepted += 1
        chan: ch.Channel | None = None
        try:
            try:
                chan, wire, auth = await self._within_handshake_budget(self._prove(reader, writer))
            except NoSharedCommunity:
                self.stats.strangers += 1
                self._log_preauth(f"a peer at {address} shares no community; nothing was exchanged")
                return
            except (TimeoutError, P2PError, ConnectionError, OSError) as exc:
                self.stats.failed_preauth += 1
                why = "too slow" if isinstance(exc, TimeoutError) else str(exc)
                self._log_preauth(
                    f"connection from {address} dropped before proving membership: {why}"
                )
                return
            finally:
                self._leave_preauth(task)
            self.stats.proved += 1
            if (
                sum(self._sessions_per_address.values()) >= MAX_SESSIONS
                or self._sessions_per_address[address] >= MAX_PER_ADDRESS
            ):
                self.stats.refused_busy += 1
                self.log(f"session from {address} refused: too many sessions at once")
                return
            self._sessions_per_address[address] += 1
            try:
                async with asyncio.timeout(self.deadline):
                    result = await session.run(self.home, chan, lock=self.lock, auth=auth, io=wire)
                self.stats.sessions += 1
                self.results.append(result)
                if self.on_session is not None:
                    self.on_session(result)
                else:
                    self.log(summary(result))
            except TimeoutError:
                self.log(f"session from {address} took too long; cut off")
            except P2PError as exc:
                self.log(f"session from {address} ended: {exc}")
            except (ConnectionError, OSError) as exc:
                self.log(f"session from {address} dropped: {exc.__class__.__name__}")
            except Exception as exc:  # noqa: BLE001 - one session must never stop the server
                self.log(
                    f"session from {address} failed ({exc.__class__.__name__}); "
                    "nothing from it was kept"
                )
            finally:
                self._sessions_per_address[address] -= 1
                if not self._sessions_per_address[address]:
                    del self._sessions_per_address[address]
        finally:
            if chan is not None:
                await chan.close()
            else:
                writer.close()

    async def _prove(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[ch.Channel, session.Wire, session.Auth]:
        chan = await ch.handshake(reader, writer, False, self.io_timeout)
        wire = session.Wire(chan)
        return chan, wire, await session.authenticate(self.home, chan, wire)

    async def _within_handshake_budget(self, coro):  # noqa: ANN001, ANN202
        """Run `coro` with `handshake_timeout` seconds of the peer's time. Time this
        process could not run (its own sessions holding the event loop, a loaded
        machine) is not the peer's fault and is added back, up to HANDSHAKE_HARD_LIMIT
        seconds in all: under load an honest peer used to be cut off mid-proof
        ("disconnected ... (phase identity)"). Slow strangers still cannot hold the
        server: the pre-auth pool is bounded per address and drops its oldest."""
        loop = asyncio.get_running_loop()
        start, lag0 = loop.time(), self._lag_now()
        hard = start + max(self.handshake_timeout, HANDSHAKE_HARD_LIMIT)
        task = asyncio.ensure_future(coro)
        try:
            while True:
                due = min(hard, start + self.handshake_timeout + self._lag_now() - lag0)
                remaining = due - loop.time()
                if remaining <= 0:
                    raise TimeoutError()
                done, _ = await asyncio.wait({task}, timeout=remaining)
                if done:
                    return task.result()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _lag_now(self) -> float:
        """Seconds, so far, that the event loop ran later than asked (see `_watch_lag`)."""
        if self._tick_due is None:
            return 0.0
        return self._lag + max(0.0, asyncio.get_running_loop().time() - self._tick_due)

    def _watch_lag(self) -> None:
        """A timer every LAG_TICK seconds; how late it fires is time the event loop was
        held (by our own sessions or a loaded machine). A plain callback, no task, so
        lateness is measured in the very loop iteration that ends the hold."""
        loop = asyncio.get_running_loop()
        if self._tick_due is not None:
            self._lag += max(0.0, loop.time() - self._tick_due)
        self._tick_due = loop.time() + LAG_TICK
        self._ticker = loop.call_at(self._tick_due, self._watch_lag)

    def _log_preauth(self, line: str) -> None:
        """At most one line a second about strangers, so a flood does not flood the log."""
        now = time.monotonic()
        if now - self._last_preauth_log < 1.0:
            self._quiet += 1
            return
        more = f" (and {self._quiet} more such connections)" if self._quiet else ""
        self._last_preauth_log, self._quiet = now, 0
        self.log(line + more)

    def _admit(self, address: str) -> bool:
        """A token bucket per address: a flood of reconnections from a few addresses
        cannot keep the server busy with handshakes."""
        now = time.monotonic()
        if len(self._buckets) >= MAX_TRACKED:
            full = [
                a
                for a, (tokens, at) in self._buckets.items()
                if tokens + (now - at) * NEW_PER_SECOND >= NEW_BURST
            ]
            for a in full:
                del self._buckets[a]
            if len(self._buckets) >= MAX_TRACKED:
                self._buckets.clear()
        tokens, at = self._buckets.get(address, (NEW_BURST, now))
        tokens = min(NEW_BURST, tokens + (now - at) * NEW_PER_SECOND)
        if tokens < 1.0:
            self._buckets[address] = (tokens, now)
            return False
        self._buckets[address] = (tokens - 1.0, now)
        return True

    def _leave_preauth(self, task: asyncio.Task) -> None:
        entry = self._preauth.pop(task, None)
        if entry is not None:
            address = entry[0]
            self._preauth_per_address[address] -= 1
            if not self._preauth_per_address[address]:
                del self._preauth_per_address[address]

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting; give sessions in flight `grace` seconds to finish, then
        cut them (a cut session stores nothing: it applies in one transaction)."""
        for srv in self._servers:
            srv.close()
        if self._ticker is not None:
            self._ticker.cancel()
        if self._active:
            _done, late = await asyncio.wait(set(self._active), timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for srv in self._servers:
            await srv.wait_closed()


def summary(r: session.SessionResult) -> str:
    from p2p.identity import fingerprint

    def count(k: int, one: str, many: str) -> str:
        return f"{k} {one if k == 1 else many}"

    n = r.news
    what = [count(n.posts, "new post", "new posts"), count(n.members, "new member", "new members")]
    if n.chat_messages:
        what.append(count(n.chat_messages, "new chat message", "new chat messages"))
    if n.direct_messages:
        what.append(count(n.direct_messages, "direct message", "direct messages") + " for you")
    shared = count(len(r.shared), "shared community", "shared communities")
    docs = count(r.received_records, "document", "documents")
    return (
        f"synced with {fingerprint(r.peer)} ({shared}): {', '.join(what)}; "
        f"sent {r.sent_records} and received {docs}"
        + (
            f"; {count(r.attachments.chunks, 'attachment chunk', 'attachment chunks')}"
            if r.attachments.chunks
            else ""
        )
        + (
            f"; REJECTED {count(len(r.report.rejected), 'change', 'changes')}"
            if r.report.rejected
            else ""
        )
    )


async def sync_with(
    home: Home,
    host: str,
    port: int,
    *,
    io_timeout: float = 30.0,
    deadline: float = SESSION_DEADLINE,
    progress: Callable[[int, int, int], None] | None = None,
    lock: asyncio.Lock | None = None,
) -> session.SessionResult:
    """Connect to a peer and run one session
    (`progress(records received, records expected, bytes received)`).

    A peer that drops the connection before both sides proved a shared community
    has exchanged nothing and is most often just busy (its own `serve` syncing,
    a loaded machine): that is tried again, RETRIES times, after a short pause."""
    for attempt in range(RETRIES + 1):
        try:
            return await _sync_once(
                home,
                host,
                port,
                io_timeout=io_timeout,
                deadline=deadline,
                progress=progress,
                lock=lock,
            )
        except (PeerDisconnected, HandshakeFailed) as exc:
            dropped = isinstance(exc, PeerDisconnected) or isinstance(
                exc.__cause__, asyncio.IncompleteReadError | ConnectionError | OSError
            )
            if not dropped or exc.phase not in RETRY_PHASES or attempt == RETRIES:
                raise
        await asyncio.sleep(RETRY_PAUSE * (attempt + 1))
    raise AssertionError("unreachable")


async def _sync_once(
    home: Home,
    host: str,
    port: int,
    *,
    io_timeout: float,
    deadline: float,
    progress: Callable[[int, int, int], None] | None,
    lock: asyncio.Lock | None,
) -> session.SessionResult:
    try:
        async with asyncio.timeout(deadline):
            chan = await ch.open_channel(host, port, io_timeout=io_timeout)
            try:
                return await session.run(home, chan, progress=progress, lock=lock)
            finally:
                await chan.close()
    except TimeoutError as exc:
        raise PeerTimeout(f"the session with {host}:{port} took too long") from exc
    except (ConnectionError, OSError) as exc:
        raise LanError(
            f"the connection to {host}:{port} failed ({exc.__class__.__name__})"
        ) from exc
