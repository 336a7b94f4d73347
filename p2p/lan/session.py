"""A sync session inside an encrypted channel, in named phases (docs/lan-protocol.md).

MEMBERSHIP  each side sends HMAC(community key, tag || handshake hash || role)
            for each community it is in, padded with random values to a
            multiple of 32, so that a stranger learns neither which
            communities nor how many. Only a member can recognise a proof.
IDENTITY    only if at least one community is shared: the initiator reveals
            its Ed25519 key with a signature over the handshake hash; the
            responder checks it and its bans, and reveals its own only if a
            community is left. Each says which shared communities it will
            exchange (a member banned from one is dropped from it here).
INVENTORY   heads of every document of the communities both will exchange.
WANT        what each side lacks, with the other's hashes it already holds.
TRANSFER    one `doc` record per wanted document, then `done`.
APPLY       spooled records go through the acceptance path in one transaction.

A peer that has not passed MEMBERSHIP can send at most one 64 KiB message and
nothing it sends is written anywhere.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import msgpack
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from p2p import exchange
from p2p.accept import Report, from_record, role_of
from p2p.blobs import session as blob_session
from p2p.blobs.exchange import Received
from p2p.community import Community, all_communities, community_doc
from p2p.errors import (
    HandshakeFailed,
    LanError,
    NoSharedCommunity,
    PeerMisbehaved,
    SameIdentity,
)
from p2p.home import Home
from p2p.identity import verify
from p2p.index import prefetch
from p2p.news import News, Tracker

VERSION = 2
PROOF_TAG = b"p2p/lan/member/v2\x00"
ID_TAG = b"p2p/lan/id/v2\x00"
PROOF_PAD = 32  # proofs are padded to a multiple of this
MAX_COMMUNITIES = 1024
MAX_RECORDS = 1_000_000
MAX_SPOOL = 4 * 1024**3
INV_CHUNK = 2000  # documents per inventory message
MAX_HEADS = 256  # heads per document in an inventory or want
MAX_NEW_DOCS = 50_000  # documents a peer may list that this side does not hold
MAX_INV_HEADS = 200_000  # hashes in a peer's whole inventory
APPLY_BATCH = 32
# Bytes of records a slow peer stores per second (a 1M-post first sync, 70 MB, is
# applied here at 1.5-2.7 MB/s; an old laptop may take several times longer): how
# much longer than the usual silence we wait for it after sending them, at most
# MAX_PATIENCE seconds.
SLOWEST_APPLY = 256 * 1024
MAX_PATIENCE = 3600.0


class Phase(str, Enum):
    HANDSHAKE = "handshake"
    MEMBERSHIP = "membership"
    IDENTITY = "identity"
    INVENTORY = "inventory"
    WANT = "want"
    TRANSFER = "transfer"
    APPLY = "apply"
    BLOBS = "blobs"


class Channel(Protocol):
    peer_key: bytes
    handshake_hash: bytes
    max_message: int
    io_timeout: float  # seconds of the peer's silence before the session is closed

    @property
    def role(self) -> bytes: ...
    @property
    def peer_role(self) -> bytes: ...
    async def send(self, data: bytes) -> None: ...
    async def recv(self) -> bytes: ...
    async def close(self) -> None: ...


def community_key(c: Community) -> bytes:
    """The key a member proves knowledge of: the secret of a private community,
    the full descriptor (id, owner, salt) of an open one."""
    return _derive(c.secret.encode() if c.secret else c.id + c.owner + c.salt)


@functools.lru_cache(maxsize=4096)
def _derive(material: bytes) -> bytes:
    """Cached, so that a stranger's connection costs one HMAC per own community."""
    return HKDF(hashes.SHA256(), 32, salt=b"p2p/lan/community/v1", info=b"").derive(material)


def proof(c: Community, handshake_hash: bytes, role: bytes) -> bytes:
    return hmac.new(community_key(c), PROOF_TAG + handshake_hash + role, hashlib.sha256).digest()


def padded_proofs(mine: list[Community], handshake_hash: bytes, role: bytes) -> list[bytes]:
    """Own proofs plus random filler up to a multiple of PROOF_PAD, sorted."""
    real = [proof(c, handshake_hash, role) for c in mine]
    fill = -len(real) % PROOF_PAD or (PROOF_PAD if not real else 0)
    return sorted(real + [os.urandom(32) for _ in range(fill)])


@dataclass
class Auth:
    """What MEMBERSHIP and IDENTITY established."""

    peer: bytes
    shared: list[Community]
    blobs: bool = False  # both sides carry attachments (phase `blobs`)


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
    attachments: Received = field(default_factory=Received)

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
            "set_aside": self.report.set_aside,
            **self.news.as_json(),
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "seconds": round(self.seconds, 3),
            "attachments": {
                "chunks": self.attachments.chunks,
                "bytes": self.attachments.size,
                "completed": self.attachments.completed,
                "refused": self.attachments.refused,
            },
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


class Wire:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.sent = 0
        self.received = 0
        self.phase = Phase.MEMBERSHIP
        self._patience = 0.0

    def be_patient(self, seconds: float) -> None:
        """Wait up to `seconds` more than the usual silence for the peer's next message:
        it is storing what we just sent (a first sync of a large community takes
        longer than the 30 s a silent peer is otherwise given)."""
        self._patience = seconds

    async def send(self, obj: dict) -> None:
        data = _pack(obj)
        self.sent += len(data)
        await self.channel.send(data)

    async def recv(self, *expect: str) -> dict:
        extra, self._patience = self._patience, 0.0
        if extra:
            usual = self.channel.io_timeout
            self.channel.io_timeout = usual + extra
            try:
                data = await self.channel.recv()
            finally:
                self.channel.io_timeout = usual
        else:
            data = await self.channel.recv()
        self.received += len(data)
        obj = _unpack(data)
        if expect and obj["t"] not in expect:
            raise PeerMisbehaved(
                f"the peer sent {obj['t']!r} where {' or '.join(map(repr, expect))} was due"
            )
        return obj


@contextmanager
def _in(io: Wire, phase: Phase) -> Iterator[None]:
    """Tag any LAN error raised inside with the phase it happened in."""
    io.phase = phase
    try:
        yield
    except LanError as exc:
        if not exc.phase:
            exc.phase = phase.value
            where = f"phase {phase.value}"
            if phase is Phase.BLOBS:  # the documents were stored before this phase began
                where += "; the posts and messages it sent were stored"
            exc.args = (f"{exc.args[0] if exc.args else exc} ({where})",)
        raise


def _banned(home: Home, c: Community, peer: bytes) -> bool:
    return role_of(community_doc(home, c), peer)[1]


async def authenticate(home: Home, channel: Channel, io: Wire | None = None) -> Auth:
    """MEMBERSHIP, then IDENTITY. Raises NoSharedCommunity (having revealed nothing)
    when the peer proves no community this home is in."""
    io = io or Wire(channel)
    hh = channel.handshake_hash
    mine = all_communities(home)
    with _in(io, Phase.MEMBERSHIP):
        proofs_out = padded_proofs(mine, hh, channel.role)
        await io.send({"t": "hello", "v": VERSION, "proofs": proofs_out, "blobs": 1})
        hello = await io.recv("hello")
        if hello.get("v") != VERSION:
            raise PeerMisbehaved(
                f"the peer speaks LAN protocol version {hello.get('v')!r}, not {VERSION}: "
                "one of you needs to update p2p"
            )
        proofs = hello.get("proofs")
        if not isinstance(proofs, list) or len(proofs) > MAX_COMMUNITIES:
            raise PeerMisbehaved("the peer sent an invalid membership list")
        theirs = {p for p in proofs if isinstance(p, bytes) and len(p) == 32}
        candidates = [c for c in mine if proof(c, hh, channel.peer_role) in theirs]
        if not candidates:
            await io.send({"t": "none"})
            raise NoSharedCommunity()
    with _in(io, Phase.IDENTITY):
        sig = home.identity.sign(ID_TAG + hh + channel.role)
        mine_id = {"t": "id", "key": home.public_key, "sig": sig}
        if channel.role == b"I":  # the initiator reveals first; the responder (a serving
            await io.send(mine_id)  # peer) only to a member it has not banned everywhere
        got = await io.recv("id", "none")
        if got["t"] == "none":
            raise NoSharedCommunity()
        key, psig = got.get("key"), got.get("sig")
        if not (isinstance(key, bytes) and len(key) == 32 and isinstance(psig, bytes)):
            raise HandshakeFailed("the peer's identity proof is malformed")
        if not verify(key, psig, ID_TAG + hh + channel.peer_role):
            raise HandshakeFailed("the peer's identity proof does not verify (forged identity?)")
        if key == home.public_key:
            if channel.role == b"R":  # our own `sync` (or serve): let it see that too
                await io.send(mine_id)
            raise SameIdentity()
        channel.peer_key = key
        offered = [c for c in candidates if not _banned(home, c, key)]
        if channel.role == b"R":
            if not offered:
                await io.send({"t": "none"})
                raise NoSharedCommunity(
                    "that peer is banned from every community you share; nothing was exchanged"
                )
            await io.send(mine_id)
        await io.send({"t": "shared", "communities": sorted(c.id for c in offered)})
        msg = await io.recv("shared")
        ids = msg.get("communities")
        if not isinstance(ids, list) or len(ids) > MAX_COMMUNITIES:
            raise PeerMisbehaved("the peer sent an invalid community list")
        agreed = {i for i in ids if isinstance(i, bytes)}
        shared = [c for c in offered if c.id in agreed]
        if not shared:
            raise NoSharedCommunity(
                "that peer and you have no community left to exchange (a ban, or one of you "
                "left it)"
            )
    channel.max_message = max(channel.max_message, _MAX_MESSAGE)
    return Auth(key, shared, hello.get("blobs") == 1)


_MAX_MESSAGE = 16 * 1024 * 1024


async def run(
    home: Home,
    channel: Channel,
    *,
    lock: asyncio.Lock | None = None,
    log: Callable[[str], None] | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    auth: Auth | None = None,
    io: Wire | None = None,
) -> SessionResult:
    """Run one session; both sides call this (the protocol is symmetric).
    `progress(records received, records expected, bytes received)`."""
    started = time.monotonic()
    io = io or Wire(channel)
    if auth is None:
        auth = await authenticate(home, channel, io)
    peer = auth.peer
    result = SessionResult(peer)
    shared_ids = [c.id for c in auth.shared]
    result.shared = shared_ids

    with _in(io, Phase.INVENTORY):
        inv = exchange.inventory(home, shared_ids)
        await _send_inventory(io, home, auth.shared, inv)
        peer_inv = await _recv_inventory(io, home, set(shared_ids), inv)
    with _in(io, Phase.WANT):
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
                    progress(count, len(want), io.received)
            result.received_records = count

        before = io.sent
        with _in(io, Phase.TRANSFER):
            await _both(send_all(), receive_all())
        # the peer now stores what we sent before it says anything more
        io.be_patient(min(MAX_PATIENCE, (io.sent - before) / SLOWEST_APPLY))
        spool.seek(0)
        with _in(io, Phase.APPLY):
            if lock is not None:
                async with lock:
                    result.report, result.news = _apply(home, spool, peer, peer_inv)
            else:
                result.report, result.news = _apply(home, spool, peer, peer_inv)
    if auth.blobs:  # store writes here are synchronous between awaits: no lock needed
        with _in(io, Phase.BLOBS):
            result.attachments = await blob_session.run(home, io, peer, shared_ids)
    result.bytes_sent, result.bytes_received = io.sent, io.received
    result.seconds = time.monotonic() - started
    if log:
        log(
            f"synced with {peer.hex()[:12]}: sent {result.sent_records}, "
            f"received {result.received_records}, applied {result.report.applied}"
        )
    return result


async def _send_inventory(
    io: Wire, home: Home, shared: list[Community], inv: exchange.Inventory
) -> None:
    """`inv` messages per community (at most INV_CHUNK documents each), then `inv_end`."""
    for c in sorted(shared, key=lambda c: c.id):
        ids = sorted(home.docs.ids(c.id))
        items = [(d, inv[d]) for d in ids if d in inv]
        for i in range(0, len(items), INV_CHUNK):
            await io.send({"t": "inv", "community": c.id, "docs": dict(items[i : i + INV_CHUNK])})
    await io.send({"t": "inv_end"})


async def _recv_inventory(
    io: Wire, home: Home, shared: set[bytes], mine: exchange.Inventory
) -> exchange.Inventory:
    """The peer's inventory, bounded: only shared communities, each document once, at
    most MAX_NEW_DOCS this side does not hold and MAX_INV_HEADS hashes in all."""
    out: exchange.Inventory = {}
    new = heads_total = 0
    while True:
        msg = await io.recv("inv", "inv_end")
        if msg["t"] == "inv_end":
            return out
        community, docs = msg.get("community"), msg.get("docs")
        if community not in shared or not isinstance(docs, dict):
            raise PeerMisbehaved("the peer listed documents of a community we do not share")
        for doc, heads in docs.items():
            if (
                not isinstance(doc, bytes)
                or len(doc) != 16
                or doc in out
                or not isinstance(heads, list)
                or len(heads) > MAX_HEADS
                or not all(isinstance(h, bytes) and len(h) == 32 for h in heads)
            ):
                raise PeerMisbehaved("the peer sent a bad inventory")
            if doc in mine:
                row = home.store.db.execute(
                    "SELECT community FROM docs WHERE id = ?", (doc,)
                ).fetchone()
                if row is None or row[0] != community:
                    raise PeerMisbehaved("the peer listed a document under the wrong community")
            else:
                new += 1
            heads_total += len(heads)
            if new > MAX_NEW_DOCS or heads_total > MAX_INV_HEADS:
                raise PeerMisbehaved("the peer's inventory is larger than a session may carry")
            out[doc] = list(heads)


async def _send_heads(io: Wire, kind: str, docs: exchange.Inventory) -> None:
    """An inventory-shaped message list: `kind` chunks, then `kind`_end."""
    items = sorted(docs.items())
    for i in range(0, len(items), INV_CHUNK):
        await io.send({"t": kind, "docs": dict(items[i : i + INV_CHUNK])})
    await io.send({"t": f"{kind}_end"})


async def _recv_heads(io: Wire, kind: str, allowed: Callable[[bytes], bool]) -> exchange.Inventory:
    out: exchange.Inventory = {}
    while True:
        msg = await io.recv(kind, f"{kind}_end")
        if msg["t"] == f"{kind}_end":
            return out
        if not isinstance(msg.get("docs"), dict):
            raise PeerMisbehaved(f"the peer sent a bad {kind} list")
        for doc, heads in msg["docs"].items():
            if (
                not isinstance(doc, bytes)
                or len(doc) != 16
                or doc in out
                or not isinstance(heads, list)
                or len(heads) > MAX_HEADS
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
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return str(path)


def _apply(
    home: Home, spool: Any, peer: bytes, peer_inv: exchange.Inventory
) -> tuple[Report, News]:
    report = Report()
    acceptor = home.acceptor()
    tracker = Tracker(home)
    acceptor.committed = tracker.seen  # news counted without loading each document again

    def spooled() -> Iterator[dict]:
        while header := spool.read(4):
            yield _unpack(spool.read(int.from_bytes(header, "big")))

    # a first sync of a large community: new feeds are loaded and read on the second
    # core while this one judges and stores (as an import does: p2p/index/prefetch.py)
    with prefetch.Ahead(home) as helper, home.store.transaction() as db:
        batch = []
        for record, priced in helper.ahead(spooled()):
            try:
                batch.append(from_record(record, priced=priced, vouched=helper.loaded(record)))
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
        held = {d for (d,) in db.execute("SELECT id FROM docs")}
        db.executemany(
            "INSERT OR REPLACE INTO peer_heads (peer, doc, heads) VALUES (?, ?, ?)",
            [(peer, d, msgpack.packb(sorted(h))) for d, h in peer_inv.items() if d in held],
        )
    return report, news
