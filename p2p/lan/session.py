"""A sync session inside an authenticated channel: the same exchange as bundles.

1. `hello`: each side proves membership of each of its communities with
   HMAC(community key, tag || handshake hash || own key). The other side can
   only recognise proofs for communities it is in itself, so peers learn the
   communities they share and nothing about the others; a proof is bound to
   this session and this sender, so it cannot be replayed or reflected.
2. `inv`: each side sends its inventory of the shared communities.
3. `want`: each side names the documents it lacks something of, with the
   other's heads it already holds, so nothing the other has crosses back.
4. `doc` records for exactly what the other asked for, then `done`.

Received records are spooled to a private temporary file and applied through
the acceptance path in one transaction only after `done` arrived, so a peer
that vanishes mid-stream leaves nothing partial behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from p2p import exchange
from p2p.accept import Report, from_record
from p2p.community import Community, all_communities
from p2p.errors import PeerMisbehaved
from p2p.home import Home
from p2p.news import News, Tracker

PROOF_TAG = b"p2p/lan/member/v1\x00"
VERSION = 1
MAX_COMMUNITIES = 1024
MAX_RECORDS = 1_000_000
MAX_SPOOL = 4 * 1024**3
INV_CHUNK = 2000  # documents per inventory message
MAX_HEADS = 256  # heads per document in an inventory
MAX_DOCS = 10_000_000
APPLY_BATCH = 32


class Channel(Protocol):
    peer_key: bytes
    handshake_hash: bytes

    async def send(self, data: bytes) -> None: ...
    async def recv(self) -> bytes: ...
    async def close(self) -> None: ...


def community_key(c: Community) -> bytes:
    """The key a member proves knowledge of: the secret of a private community,
    the full descriptor (id, owner, salt) of an open one."""
    material = c.secret.encode() if c.secret else c.id + c.owner + c.salt
    return HKDF(hashes.SHA256(), 32, salt=b"p2p/lan/community/v1", info=b"").derive(material)


def proof(c: Community, handshake_hash: bytes, sender: bytes) -> bytes:
    return hmac.new(community_key(c), PROOF_TAG + handshake_hash + sender, hashlib.sha256).digest()


@dataclass
class SessionResult:
    peer: bytes
    shared: list[bytes] = field(default_factory=list)
    sent_records: int = 0
    received_records: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    report: Report = field(default_factory=Report)
    news: News = field(default_factory=News)
    seconds: float = 0.0

    def as_json(self) -> dict:
        from p2p.identity import fingerprint

        return {
            "public_key": self.peer.hex(),
            "fingerprint": fingerprint(self.peer),
            "shared_communities": len(self.shared),
            "sent": self.sent_records,
            "received": self.received_records,
            "applied": self.report.applied,
            "pending": self.report.pending,
            "rejected": [
                {"change": x.change.hex() if x.change else None, "reason": x.reason}
                for x in self.report.rejected
            ],
            "forks": self.report.fork_lines,
            **self.news.as_json(),
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "seconds": round(self.seconds, 3),
        }


def _pack(obj: dict) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(data: bytes) -> dict:
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            max_array_len=1_000_000,
            max_map_len=1_000_000,
        )
    except Exception as exc:
        raise PeerMisbehaved("the peer sent a message that is not valid msgpack") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
        raise PeerMisbehaved("the peer sent a message of unknown shape")
    return obj


class _Counting:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.sent = 0
        self.received = 0

    async def send(self, obj: dict) -> None:
        data = _pack(obj)
        self.sent += len(data)
        await self.channel.send(data)

    async def recv(self, expect: str | None = None) -> dict:
        data = await self.channel.recv()
        self.received += len(data)
        obj = _unpack(data)
        if expect is not None and obj["t"] != expect:
            raise PeerMisbehaved(f"the peer sent {obj['t']!r} where {expect!r} was due")
        return obj


async def run(
    home: Home,
    channel: Channel,
    *,
    lock: asyncio.Lock | None = None,
    log: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SessionResult:
    """Run one session; both sides call this (the protocol is symmetric)."""
    started = time.monotonic()
    me = home.public_key
    peer = channel.peer_key
    result = SessionResult(peer)
    if peer == me:
        raise PeerMisbehaved("that peer is this very identity; nothing to sync")
    io = _Counting(channel)
    mine = all_communities(home)
    hh = channel.handshake_hash

    await io.send({"t": "hello", "v": VERSION, "proofs": [proof(c, hh, me) for c in mine]})
    hello = await io.recv("hello")
    proofs = hello.get("proofs")
    if not isinstance(proofs, list) or len(proofs) > MAX_COMMUNITIES:
        raise PeerMisbehaved("the peer sent an invalid membership list")
    theirs = {bytes(p) for p in proofs if isinstance(p, bytes)}
    shared = [c for c in mine if proof(c, hh, peer) in theirs]
    shared_ids = [c.id for c in shared]
    result.shared = shared_ids

    inv = exchange.inventory(home, shared_ids)
    await _send_heads(io, "inv", inv)

    peer_inv = await _recv_heads(io, "inv", lambda doc: True)
    want = exchange.wants(home, inv, peer_inv, exchange.known_by(home, peer))
    await _send_heads(io, "want", want)
    peer_want = await _recv_heads(io, "want", lambda doc: doc in inv)

    with tempfile.TemporaryFile(dir=_spool_dir(home)) as spool:

        async def send_all() -> None:
            for record in exchange.records_wanted(home, peer_inv, peer_want):
                await io.send(record)
                result.sent_records += 1
                await asyncio.sleep(0)
            await io.send({"t": "done", "count": result.sent_records})

        async def receive_all() -> None:
            count = 0
            size = 0
            received: set[bytes] = set()
            while True:
                data = await channel.recv()
                io.received += len(data)
                msg = _unpack(data)
                if msg["t"] == "done":
                    if msg.get("count") != count:
                        raise PeerMisbehaved("the peer's record count does not match")
                    break
                if msg["t"] != "doc":
                    raise PeerMisbehaved(f"unexpected {msg['t']!r} message during sync")
                if msg.get("community") not in shared_ids:
                    raise PeerMisbehaved("the peer sent content of a community we do not share")
                doc = msg.get("doc")
                if not isinstance(doc, bytes) or doc not in want or doc in received:
                    raise PeerMisbehaved("the peer sent a document we did not ask for")
                received.add(doc)
                count += 1
                size += len(data) + 4
                if count > MAX_RECORDS or size > MAX_SPOOL:
                    raise PeerMisbehaved("the peer sent more than a session may carry")
                spool.write(len(data).to_bytes(4, "big") + data)
                if progress is not None:
                    progress(count, len(want))
            result.received_records = count

        await _both(send_all(), receive_all())
        spool.seek(0)
        if lock is not None:
            async with lock:
                result.report, result.news = _apply(home, spool, peer, peer_inv)
        else:
            result.report, result.news = _apply(home, spool, peer, peer_inv)
    result.bytes_sent, result.bytes_received = io.sent, io.received
    result.seconds = time.monotonic() - started
    if log:
        log(
            f"synced with {peer.hex()[:12]}: sent {result.sent_records}, "
            f"received {result.received_records}, applied {result.report.applied}"
        )
    return result


async def _send_heads(io: _Counting, kind: str, docs: exchange.Inventory) -> None:
    """An inventory-shaped message list: `kind` chunks, then `kind`_end."""
    items = sorted(docs.items())
    for i in range(0, len(items), INV_CHUNK):
        await io.send({"t": kind, "docs": dict(items[i : i + INV_CHUNK])})
    await io.send({"t": f"{kind}_end"})


async def _recv_heads(
    io: _Counting, kind: str, allowed: Callable[[bytes], bool]
) -> exchange.Inventory:
    out: exchange.Inventory = {}
    while True:
        msg = await io.recv()
        if msg["t"] == f"{kind}_end":
            return out
        if msg["t"] != kind or not isinstance(msg.get("docs"), dict):
            raise PeerMisbehaved(f"the peer sent a bad {kind} list")
        for doc, heads in msg["docs"].items():
            if (
                not isinstance(doc, bytes)
                or len(doc) != 16
                or not isinstance(heads, list)
                or len(heads) > MAX_HEADS
                or len(out) >= MAX_DOCS
                or not all(isinstance(h, bytes) and len(h) == 32 for h in heads)
                or not allowed(doc)
            ):
                raise PeerMisbehaved(f"the peer sent a bad {kind} list")
            out[doc] = list(heads)


async def _both(*coros) -> None:  # noqa: ANN002
    """Run concurrently; the first failure cancels the other and is raised as is."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _spool_dir(home: Home) -> str:
    path = home.path / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _apply(
    home: Home, spool: Any, peer: bytes, peer_inv: exchange.Inventory
) -> tuple[Report, News]:
    report = Report()
    acceptor = home.acceptor()
    tracker = Tracker(home)
    with home.store.transaction() as db:
        batch = []
        while header := spool.read(4):
            data = spool.read(int.from_bytes(header, "big"))
            try:
                batch.append(from_record(_unpack(data)))
            except ValueError as exc:
                from p2p.accept import Rejection

                report.rejected.append(Rejection(b"", None, str(exc)))
                continue
            if len(batch) >= APPLY_BATCH:
                tracker.before(batch)
                report.merge(acceptor.accept(batch))
                batch = []
        if batch:
            tracker.before(batch)
            report.merge(acceptor.accept(batch))
        news = tracker.count(report)
        now = int(time.time())
        db.execute(
            "INSERT INTO peers (public_key, last_seen, via) VALUES (?, ?, 'lan')"
            " ON CONFLICT (public_key) DO UPDATE SET last_seen = excluded.last_seen,"
            " via = excluded.via",
            (peer, now),
        )
        db.executemany(
            "INSERT OR REPLACE INTO peer_heads (peer, doc, heads) VALUES (?, ?, ?)",
            [(peer, d, msgpack.packb(sorted(h))) for d, h in peer_inv.items()],
        )
    return report, news
