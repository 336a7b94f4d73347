"""Serving and initiating sync sessions over TCP.

The server accepts several sessions at once; each has a deadline, so a peer
that stalls or sends nonsense is cut off without harming the others. Writes
to the store are serialised by one lock (SQLite has one writer anyway).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from p2p.errors import LanError, P2PError, PeerTimeout
from p2p.home import Home
from p2p.lan import channel as ch
from p2p.lan import session

SESSION_DEADLINE = 300.0
MAX_SESSIONS = 16
MAX_PER_ADDRESS = 4  # so one stranger cannot take every slot

Log = Callable[[str], None]


def default_address() -> str:
    """This machine's address on the local network (no packet is sent)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))
        return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


@dataclass
class Server:
    home: Home
    host: str
    port: int = 0
    io_timeout: float = 30.0
    deadline: float = SESSION_DEADLINE
    log: Log = field(default=lambda _m: None)
    on_session: Callable[[session.SessionResult], None] | None = None
    results: list[session.SessionResult] = field(default_factory=list)
    _server: asyncio.AbstractServer | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_SESSIONS))
    _active: set[asyncio.Task] = field(default_factory=set)
    _per_address: dict[str, int] = field(default_factory=dict)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if peer else "?"
        if self._slots.locked() or self._per_address.get(address, 0) >= MAX_PER_ADDRESS:
            writer.close()
            return
        self._per_address[address] = self._per_address.get(address, 0) + 1
        task = asyncio.current_task()
        if task is not None:
            self._active.add(task)
            task.add_done_callback(self._active.discard)
        async with self._slots:
            chan = None
            try:
                async with asyncio.timeout(self.deadline):
                    chan = await ch.accept_channel(
                        reader, writer, self.home.identity, io_timeout=self.io_timeout
                    )
                    result = await session.run(self.home, chan, lock=self._lock)
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
                self._per_address[address] -= 1
                if not self._per_address[address]:
                    del self._per_address[address]
                if chan is not None:
                    await chan.close()
                else:
                    writer.close()

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting; give sessions in flight `grace` seconds to finish, then
        cut them (a cut session stores nothing: it applies in one transaction)."""
        if self._server is not None:
            self._server.close()
        if self._active:
            _done, late = await asyncio.wait(set(self._active), timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


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
    progress: Callable[[int, int], None] | None = None,
) -> session.SessionResult:
    """Connect to a peer and run one session (`progress(received, expected)`)."""
    try:
        async with asyncio.timeout(deadline):
            chan = await ch.open_channel(host, port, home.identity, io_timeout=io_timeout)
            try:
                return await session.run(home, chan, progress=progress)
            finally:
                await chan.close()
    except TimeoutError as exc:
        raise PeerTimeout(f"the session with {host}:{port} took too long") from exc
    except (ConnectionError, OSError) as exc:
        raise LanError(
            f"the connection to {host}:{port} failed ({exc.__class__.__name__})"
        ) from exc
