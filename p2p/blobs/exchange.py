"""What bundles (and LAN sessions) carry of attachments, and taking it in.

Records (docs/bundle-format.md §8): `blob-have` says which attachments, and
which of their chunks, the writer holds (one bit per chunk; empty bytes: all),
`blob-want` lists attachments its posts name that it lacks, `blob-manifest`
carries a manifest, `blob-chunk` one chunk. A writer fills a byte budget in a
stated order: text first (the caller), thumbnails (inline in posts, so with the
text), then attachments someone asked for, then the rest newest day first,
smallest first within a day. A chunk is at most 1 MiB: memory stays flat.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from p2p.blobs import entries
from p2p.blobs.entries import Ref
from p2p.blobs.staged import Staged
from p2p.errors import BadAttachment
from p2p.home import Home

# The chunk store (threads, direct I/O, sealing) and the limits are imported where
# attachments are handled: a text-only export or `export --since` needs neither.
if TYPE_CHECKING:
    from p2p.blobs.store import BlobStore, ReadAhead

RECORD_TYPES = frozenset({"blob-have", "blob-want", "blob-manifest", "blob-chunk"})
MAX_HAVE = 10_000  # attachments per blob-have / blob-want record
RECORD_OVERHEAD = 96  # framing and field names of a blob record, for budgets
DAY_MS = 86_400_000

Have = dict[bytes, bytes]  # attachment id -> chunk bitmap (b"": every chunk)


def has_bit(bits: bytes, n: int) -> bool:
    return not bits or (n // 8 < len(bits) and bool(bits[n // 8] & (0x80 >> (n % 8))))


def _set_bit(bits: bytearray, n: int) -> None:
    if n // 8 < len(bits):
        bits[n // 8] |= 0x80 >> (n % 8)


def union(a: Have, b: Have) -> Have:
    out = dict(a)
    for aid, bits in b.items():
        if aid not in out:
            out[aid] = bits
        elif not out[aid] or not bits:
            out[aid] = b""
        else:
            x, y = out[aid], bits
            n = max(len(x), len(y))
            out[aid] = bytes(
                (x[i] if i < len(x) else 0) | (y[i] if i < len(y) else 0) for i in range(n)
            )
    return out


def referenced(home: Home, communities: Iterable[bytes] | None = None) -> dict[bytes, list[Ref]]:
    out: dict[bytes, list[Ref]] = {}
    for r in entries.refs(home, communities):
        out.setdefault(r.entry.id, []).append(r)
    return out


def have(
    home: Home,
    communities: Iterable[bytes] | None = None,
    refs: dict[bytes, list[Ref]] | None = None,
) -> Have:
    """Which attachments named in these communities this home holds, chunk by chunk
    (`refs`: `referenced(home, communities)` when the caller has it already)."""
    from p2p.blobs.store import BlobStore

    store = BlobStore(home)
    out: Have = {}
    for aid in refs if refs is not None else referenced(home, communities):
        p = store.presence(aid)
        if p is None or p.have == 0:
            continue
        out[aid] = b"" if p.state == "whole" else store.bitmap(aid)
    return out


def lacking(
    home: Home,
    communities: Iterable[bytes] | None = None,
    refs: dict[bytes, list[Ref]] | None = None,
) -> list[bytes]:
    """Attachments named in these communities that are not whole here."""
    from p2p.blobs.store import BlobStore

    store = BlobStore(home)
    out = []
    for aid in refs if refs is not None else referenced(home, communities):
        p = store.presence(aid)
        if p is None or p.state != "whole":
            out.append(aid)
    return out


@dataclass
class Plan:
    """What a writer may spend on attachments and what it was told the reader holds."""

    budget: int | None = None  # bytes for the whole bundle; None: no limit
    attachments: bool = True
    peer_have: Have = field(default_factory=dict)
    wants: set[bytes] = field(default_factory=set)
    spent: int = 0
    sent_chunks: int = 0
    sent_bytes: int = 0
    sent_attachments: int = 0
    left: list[dict] = field(default_factory=list)
    carried: dict[bytes, bytearray] = field(default_factory=dict)  # chunk bits written

    def fits(self, n: int) -> bool:
        return self.budget is None or self.spent + n <= self.budget

    def spend(self, n: int) -> None:
        self.spent += n


def _order(refs: dict[bytes, list[Ref]], wants: set[bytes]) -> list[bytes]:
    def key(aid: bytes) -> tuple:
        newest = max(r.ts for r in refs[aid])
        size = min(r.entry.size for r in refs[aid])
        return (aid not in wants, -(newest // DAY_MS), size, aid)

    return sorted(refs, key=key)


def records_for(home: Home, communities: Iterable[bytes], plan: Plan) -> Iterator[dict]:
    """Blob records for these communities: what we hold and want, then whatever
    chunks the reader lacks, in budget order (see the module docstring)."""
    ids = list(communities)
    refs = referenced(home, ids)  # once per build: it reads the indexes
    if not refs:
        return  # no post names an attachment: nothing held, wanted or sent
    from p2p.blobs.store import BlobStore

    store = BlobStore(home)
    mine = have(home, ids, refs)
    items = sorted(mine.items())
    for i in range(0, len(items), MAX_HAVE):
        record = {"t": "blob-have", "have": dict(items[i : i + MAX_HAVE])}
        plan.spend(sum(len(k) + len(v) + 4 for k, v in items[i : i + MAX_HAVE]) + 16)
        yield record
    want = lacking(home, ids, refs)
    for i in range(0, len(want), MAX_HAVE):
        plan.spend(36 * len(want[i : i + MAX_HAVE]) + 16)
        yield {"t": "blob-want", "want": want[i : i + MAX_HAVE]}
    if not plan.attachments:
        return
    with store.read_ahead() as chunks:
        yield from _chunk_records(store, refs, mine, plan, chunks)


def _chunk_records(
    store: BlobStore, refs: dict[bytes, list[Ref]], mine: Have, plan: Plan, chunks: ReadAhead
) -> Iterator[dict]:
    for aid in _order(refs, plan.wants):
        theirs = plan.peer_have.get(aid)
        if theirs == b"" or aid not in mine:
            continue
        m = store.manifest(aid)
        data = store.manifest_bytes(aid)
        if m is None or data is None:
            continue
        mine_bits = mine[aid]
        sent_manifest = theirs is not None
        missing = 0
        sent_any = False
        wanted = [
            n
            for n in range(len(m.hashes))
            if not (theirs is not None and has_bit(theirs, n)) and has_bit(mine_bits, n)
        ]
        for i, n in enumerate(wanted):
            h = m.hashes[n]
            size = m.chunk_len(n) + RECORD_OVERHEAD
            extra = 0 if sent_manifest else len(data) + RECORD_OVERHEAD
            if not plan.fits(size + extra):
                missing += m.chunk_len(n)
                continue
            then = []  # read the next ones meanwhile, those that will fit too
            need = size + extra
            for nxt in wanted[i + 1 : i + 1 + chunks.DEPTH]:
                need += m.chunk_len(nxt) + RECORD_OVERHEAD
                if not plan.fits(need):
                    break
                then.append(m.hashes[nxt])
            chunk = chunks.get(h, then)
            if chunk is None:
                continue
            if not sent_manifest:
                plan.spend(extra)
                sent_manifest = True
                yield {"t": "blob-manifest", "id": aid, "data": data}
            plan.spend(size)
            _set_bit(plan.carried.setdefault(aid, bytearray((len(m.hashes) + 7) // 8)), n)
            plan.sent_chunks += 1
            plan.sent_bytes += len(chunk)
            sent_any = True
            yield {"t": "blob-chunk", "id": aid, "n": n, "data": chunk}
        if sent_any and not missing:
            plan.sent_attachments += 1
        if missing:
            e = refs[aid][0].entry
            plan.left.append({"hash": aid.hex(), "name": e.name, "bytes": missing})


def _parse_have(value: object) -> Have:
    if not isinstance(value, dict) or len(value) > MAX_HAVE:
        raise ValueError("malformed blob-have record")
    out: Have = {}
    for aid, bits in value.items():
        if not isinstance(aid, bytes) or len(aid) != 32 or not isinstance(bits, bytes):
            raise ValueError("malformed blob-have record")
        if len(bits) > 8 * 1024:  # 64 GiB of 1 MiB chunks
            raise ValueError("malformed blob-have record")
        out[aid] = bits
    return out


@dataclass
class Received:
    chunks: int = 0
    size: int = 0
    completed: list[str] = field(default_factory=list)  # names now whole
    refused: list[str] = field(default_factory=list)  # one plain line each
    peer_have: Have = field(default_factory=dict)
    peer_wants: list[bytes] = field(default_factory=list)


class Receiver:
    """Takes blob records of one bundle or session, checking each against the
    manifest and the posts that name it; bad ones are refused with a message,
    never raised, so everything else still arrives."""

    def __init__(self, home: Home, peer: bytes | None = None, bundle: bytes | None = None) -> None:
        self.home = home
        self.peer = peer
        self.bundle = bundle  # the bundle's digest: remember which chunks it carries
        self.carried: dict[bytes, bytearray] = {}
        from p2p.blobs.store import BlobStore

        self.store = BlobStore(home)
        self.result = Received()
        self._refs: dict[bytes, list[Ref]] | None = None
        self._refused: set[bytes] = set()
        self._touched: set[bytes] = set()

    @property
    def refs(self) -> dict[bytes, list[Ref]]:
        if self._refs is None:  # after the text records: posts of this bundle count too
            self._refs = referenced(self.home, self.home.joined())
        return self._refs

    def _refuse(self, aid: bytes, why: str) -> None:
        if aid not in self._refused:
            self._refused.add(aid)
            self.result.refused.append(why)

    def take(self, record: dict) -> None:
        kind = record.get("t")
        try:
            if kind == "blob-have":
                self.result.peer_have = union(
                    self.result.peer_have, _parse_have(record.get("have"))
                )
            elif kind == "blob-want":
                want = record.get("want")
                if not isinstance(want, list) or len(want) > MAX_HAVE:
                    raise ValueError("malformed blob-want record")
                self.result.peer_wants += [w for w in want if isinstance(w, bytes) and len(w) == 32]
            elif kind == "blob-manifest":
                self._manifest(record)
            elif kind == "blob-chunk":
                self._chunk(record)
        except (BadAttachment, ValueError) as exc:
            aid = record.get("id")
            self._refuse(aid if isinstance(aid, bytes) else b"", str(exc))

    def _manifest(self, record: dict) -> None:
        aid, data = record.get("id"), record.get("data")
        if not isinstance(aid, bytes) or not isinstance(data, bytes):
            raise ValueError("malformed blob-manifest record")
        from p2p.blobs import manifest as mf

        m = mf.parse(data)
        if mf.digest(data) != aid:
            raise BadAttachment("an attachment manifest does not match its id; refused")
        for r in self.refs.get(aid, []):
            if r.entry.size != m.size or (r.entry.key is not None) != m.sealed:
                self._refuse(
                    aid,
                    f"attachment {r.entry.name!r} of post {r.post}: its data does not match "
                    "what the post says; refused (the post's text was kept)",
                )
                return
            why = self._over_limit(r, m.size)
            if why:
                self._refuse(
                    aid,
                    f"attachment {r.entry.name!r} of post {r.post} was refused: {why} "
                    "(the post's text was kept)",
                )
                return
        self.store.put_manifest(data, aid)

    def _over_limit(self, ref: Ref, size: int) -> str | None:
        from p2p import community as cm

        c = next((x for x in cm.all_communities(self.home) if x.id == ref.community), None)
        if c is None:
            return None
        from p2p.blobs.attach import limits, over_limit

        lim = limits(cm.settings(self.home, c))
        if lim.largest is None and lim.member_total is None:
            return None
        before = 0
        for aid, rs in self.refs.items():
            if aid == ref.entry.id:
                continue
            if any(r.author == ref.author and r.community == ref.community for r in rs):
                if self.store.presence(aid) is not None:
                    before += rs[0].entry.size
        return over_limit(lim, size, before)

    def _chunk(self, record: dict) -> None:
        aid, n, data = record.get("id"), record.get("n"), record.get("data")
        staged = record.get("staged")  # a chunk set aside while the bundle was proven
        if isinstance(staged, Staged):
            data, size = b"", staged.size
        elif isinstance(data, bytes):
            staged, size = None, len(data)
        else:
            raise ValueError("malformed blob-chunk record")
        if not isinstance(aid, bytes) or type(n) is not int:
            raise ValueError("malformed blob-chunk record")
        if aid in self._refused:
            return
        if 0 <= n < 8 * 8192:
            bits = self.carried.setdefault(aid, bytearray())
            if len(bits) <= n // 8:
                bits.extend(bytes(n // 8 + 1 - len(bits)))
            _set_bit(bits, n)
        if staged is not None:
            fresh = self.store.accept_staged(aid, n, staged)
        else:
            fresh = self.store.accept_chunk(aid, n, data, batch=True)
        if fresh:
            self.result.chunks += 1
            self.result.size += size
            self._touched.add(aid)

    def finish(self) -> Received:
        """Remember what the peer holds and wants; forget unreferenced excess."""
        self.store.commit()
        now = int(time.time())
        with self.home.store.transaction() as db:
            if self.peer is not None:
                db.execute("DELETE FROM blob_peer_have WHERE peer = ?", (self.peer,))
                db.execute("DELETE FROM blob_wants WHERE peer = ?", (self.peer,))
                db.executemany(
                    "INSERT OR REPLACE INTO blob_peer_have (peer, id, bits) VALUES (?, ?, ?)",
                    [(self.peer, a, b) for a, b in self.result.peer_have.items()],
                )
                db.executemany(
                    "INSERT OR REPLACE INTO blob_wants (peer, id, at) VALUES (?, ?, ?)",
                    [(self.peer, a, now) for a in self.result.peer_wants],
                )
        if self.bundle is not None:
            remember_carried(self.home, self.bundle, self.carried)
        for aid in sorted(self._touched):
            p = self.store.presence(aid)
            if p is not None and p.state == "whole":
                names = {r.entry.name for r in self.refs.get(aid, [])} or {aid.hex()[:12]}
                self.result.completed.append(sorted(names)[0])
        self.store.collect(set(self.refs))
        return self.result


def known_have(home: Home, peer: bytes) -> Have:
    rows = home.store.db.execute("SELECT id, bits FROM blob_peer_have WHERE peer = ?", (peer,))
    return {bytes(a): bytes(b) for a, b in rows}


def known_wants(home: Home) -> set[bytes]:
    return {bytes(a) for (a,) in home.store.db.execute("SELECT id FROM blob_wants")}


def remember_carried(home: Home, bundle: bytes, carried: dict[bytes, bytearray]) -> None:
    """Which chunks the bundle with this digest carries (a drop box never writes them again)."""
    with home.store.transaction() as db:
        db.executemany(
            "INSERT OR REPLACE INTO blob_carried (bundle, id, bits) VALUES (?, ?, ?)",
            [(bundle, aid, bytes(bits)) for aid, bits in carried.items()],
        )


def on_stick(home: Home, digests: Iterable[bytes]) -> Have:
    """What the bundles with these digests (those on a stick now) carry, together."""
    out: Have = {}
    for digest in digests:
        rows = home.store.db.execute(
            "SELECT id, bits FROM blob_carried WHERE bundle = ?", (digest,)
        ).fetchall()
        out = union(out, {bytes(a): bytes(b) or b"\x00" for a, b in rows})
    return out


def all_have(haves: list[Have]) -> Have:
    """Attachments every one of several peers holds whole (the others need not get them)."""
    if not haves:
        return {}
    common = {a for a, bits in haves[0].items() if bits == b""}
    for h in haves[1:]:
        common &= {a for a, bits in h.items() if bits == b""}
    return {a: b"" for a in common}
