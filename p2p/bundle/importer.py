"""Importing bundles: verify, then apply through the acceptance path, atomically.

The whole bundle is applied inside one store transaction that commits only
after the container's trailer (hash and exporter signature over every byte)
has verified. A bundle cut short, altered or forged therefore changes nothing,
whatever records it carried before the fault.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from p2p.accept import Incoming, Rejection, Report, from_record
from p2p.blobs import exchange as blob_exchange
from p2p.blobs.exchange import Received
from p2p.blobs.store import BlobStore, Staging
from p2p.bundle import inventories
from p2p.bundle.names import file_digest, legacy_digest
from p2p.bundle.records import parse_community, parse_digests, parse_have, parse_inventory
from p2p.bundle.source import Keys, open_bundle
from p2p.community import all_communities
from p2p.exchange import Inventory
from p2p.home import Home
from p2p.identity import fingerprint
from p2p.index import prefetch
from p2p.news import News, Tracker

BATCH_DOCS = 32  # documents handed to the acceptance path at once
# ... or fewer once their bytes reach this: a saved document arrives loaded, and a
# loaded document holds ~30x its saved size (32 feeds of 20k posts held ~1 GB)
BATCH_BYTES = 2 * 1024 * 1024

Progress = Callable[[int, int], None]  # (bytes of the bundle read, changes applied so far)


@dataclass
class ImportResult:
    exporter: bytes
    created: int
    files: list[Path]
    report: Report = field(default_factory=Report)
    news: News = field(default_factory=News)
    skipped_communities: list[str] = field(default_factory=list)
    already_imported: bool = False
    attachments: Received = field(default_factory=Received)
    listed: Listed | None = None  # its inventory, to learn again once its base is known
    learnt_whole: bool = False  # the exporter's whole inventory was rebuilt from it
    digest: bytes = b""  # the name of its file(s) (BLAKE3 of the bytes): bundles_seen

    @property
    def exporter_fingerprint(self) -> str:
        return fingerprint(self.exporter)


@dataclass
class Listed:
    """The inventory records of one bundle, gathered while reading it."""

    docs: Inventory = field(default_factory=dict)
    have: Inventory = field(default_factory=dict)  # older hashes the exporter holds too
    claims: set[tuple[bytes | None, bytes | None]] = field(default_factory=set)
    communities: list[bytes] = field(default_factory=list)

    def add(self, record: dict) -> None:
        """ValueError when malformed (then nothing of it is kept)."""
        docs, have, claim = parse_inventory(record), parse_have(record), parse_digests(record)
        self.docs.update(docs)
        self.have.update(have)
        self.claims.add(claim)

    def full(self, home: Home | None, exporter: bytes) -> Inventory | None:
        """The exporter's whole inventory, when the bundle lists it or this home
        holds the base it was listed against (and the result has the claimed digest)."""
        if len(self.claims) != 1:
            return None  # no inventory, or records that disagree
        ((base, claimed),) = self.claims
        if base is None:
            return self.docs
        earlier = inventories.known(home, exporter, base) if home is not None else None
        if earlier is None:
            return None
        rebuilt = inventories.apply(earlier, self.docs)
        return rebuilt if inventories.digest(rebuilt) == claimed else None


def once(rejected: list[Rejection]) -> list[Rejection]:
    """Each rejected change listed once, with the first reason found (a change
    whose signature fails is also one that nothing valid vouches for)."""
    seen: set[tuple[bytes, bytes | None]] = set()
    out = []
    for r in rejected:
        key = (r.doc, r.change)
        if r.change is None or key not in seen:
            seen.add(key)
            out.append(r)
    return out


MAX_KNOWN_HASHES = 64  # per document and peer, newest first


def learn(home: Home, exporter: bytes, listed: Listed, bundle: bytes | None) -> bool:
    """Remember what the exporter holds: its whole inventory when it can be
    rebuilt (then True), else only the documents listed. Hashes add to those
    already known (a store never loses a change), so bundles may arrive in any order."""
    full = listed.full(home, exporter)
    if full is not None:
        scope = inventories.scope_of(listed.communities)
        inventories.remember(home, exporter, scope, full, bundle=bundle)
    now = full if full is not None else {d: h for d, h in listed.docs.items() if h}
    if not now:
        return full is not None
    db = home.store.db
    old = dict(
        db.execute("SELECT doc, heads FROM peer_heads WHERE peer = ?", (exporter,)).fetchall()
    )
    rows = []
    for doc, heads in now.items():
        hashes = list(dict.fromkeys([*heads, *listed.have.get(doc, [])]))
        if doc in old:
            hashes += [h for h in msgpack.unpackb(old[doc]) if h not in hashes]
        rows.append((exporter, doc, msgpack.packb(hashes[:MAX_KNOWN_HASHES])))
    db.executemany("INSERT OR REPLACE INTO peer_heads (peer, doc, heads) VALUES (?, ?, ?)", rows)
    return full is not None


@dataclass
class Carried:
    """What a bundle's own document records hold: per document, the heads of
    the changes it carries (so a drop box never writes them there again)."""

    docs: Inventory = field(default_factory=dict)

    def add(self, inc: Incoming) -> None:
        heads = set(self.docs.get(inc.ref.id, [])) | set(inc.heads())
        self.docs[inc.ref.id] = sorted(heads)[:MAX_KNOWN_HASHES]

    def save(self, home: Home, bundle: bytes) -> None:
        home.store.db.executemany(
            "INSERT OR REPLACE INTO bundle_contents (sha256, doc, heads) VALUES (?, ?, ?)",
            [(bundle, d, msgpack.packb(h)) for d, h in self.docs.items()],
        )


def contents(home: Home, bundle: bytes) -> Inventory:
    """What an imported bundle carried (see `Carried`)."""
    return {
        d: list(msgpack.unpackb(h))
        for d, h in home.store.db.execute(
            "SELECT doc, heads FROM bundle_contents WHERE sha256 = ?", (bundle,)
        )
    }


def keys_for(home: Home, identity: bool = True) -> Keys:
    """Every key this home holds that may open a bundle (`identity=False`: only
    the community keys, which need no unlocking)."""
    from pyrage import x25519

    ids = [x25519.Identity.from_str(c.secret) for c in all_communities(home) if c.secret]
    if identity and home.has_identity():
        ids.append(home.identity.age_identity)
    return Keys(ids)


IMPORT_CACHE_KIB = 65536  # SQLite page cache while importing (the default is 2 MiB)


@contextmanager
def _page_cache(home: Home) -> Iterator[None]:
    """A larger page cache for the one long import transaction: the index b-trees it
    inserts into at random places then stay in memory instead of being spilled and read
    back (a third of the index inserts at 100k posts); the usual size afterwards."""
    db = home.store.db
    before = db.execute("PRAGMA cache_size").fetchone()[0]
    db.execute(f"PRAGMA cache_size = -{IMPORT_CACHE_KIB}")
    try:
        yield
    finally:
        db.execute(f"PRAGMA cache_size = {int(before)}")


def _size(inc: Incoming) -> int:
    return len(inc.saved) if inc.saved is not None else sum(len(c.data) for c in inc.changes)


def import_bundle(
    home: Home,
    paths: list[Path],
    *,
    keys: Keys | None = None,
    progress: Progress | None = None,
    digest: bytes | None = None,
) -> ImportResult:
    keys = keys or keys_for(home)
    joined = home.joined()
    me = home.public_key
    staging = Staging(BlobStore(home))  # chunks, written once as the bundle is proven
    try:
        return _import(home, paths, keys, progress, digest, staging, joined, me)
    finally:
        staging.discard()  # whatever was not moved into place (all, if the bundle failed)


def _import(
    home: Home,
    paths: list[Path],
    keys: Keys,
    progress: Progress | None,
    digest: bytes | None,
    staging: Staging,
    joined: dict[bytes, bytes],
    me: bytes,
) -> ImportResult:
    read = (lambda n: progress(n, 0)) if progress else None
    with open_bundle(paths, keys, stage=staging, progress=read) as opened:
        staging.settle()  # every staged chunk on disk (a full disk fails here, nothing kept)
        reader = opened.reader
        names = [digest] if digest else []
        if not names:  # the file's name comes from the proving pass (parts: hashed here)
            names.append(opened.digest or file_digest(paths))
            # a version 1 file may be known by the name p2p gave it before version 2
            if reader.header.version == 1:
                names.append(opened.legacy or legacy_digest(paths))
        digest = names[0]
        result = ImportResult(reader.header.exporter, reader.header.created, opened.files)
        result.digest = digest
        seen_before = home.store.db.execute(
            f"SELECT 1 FROM bundles_seen WHERE sha256 IN ({', '.join('?' * len(names))})",
            names,
        ).fetchone()
        acceptor = home.acceptor()
        listed = Listed()
        carried = Carried()
        skipped: set[bytes] = set()
        batch: list[Incoming] = []
        tracker = Tracker(home)
        acceptor.committed = tracker.seen
        blobs_in = blob_exchange.Receiver(home, reader.header.exporter, digest)

        batch_bytes = 0

        def flush() -> None:
            nonlocal batch_bytes
            tracker.before(batch)
            result.report.merge(acceptor.accept(batch))
            batch.clear()
            batch_bytes = 0

        helper = prefetch.Ahead(home)
        with helper, _page_cache(home), home.store.transaction() as db:
            n = 0
            for record, priced in helper.ahead(reader.records()):
                n += 1
                if progress:
                    progress(reader.offset, result.report.applied)
                kind = record.get("t")
                try:
                    if kind == "community":
                        described = parse_community(record)
                        listed.communities.append(described.id)
                        if described.id not in joined:
                            skipped.add(described.id)
                    elif kind == "inventory":
                        listed.add(record)
                    elif kind in blob_exchange.RECORD_TYPES:
                        if batch:
                            flush()
                        blobs_in.take(record)
                    elif kind == "doc":
                        inc = from_record(record, priced=priced, vouched=helper.loaded(record))
                        if inc.ref.community in joined:
                            batch.append(inc)
                            batch_bytes += _size(inc)
                            carried.add(inc)
                        else:
                            skipped.add(inc.ref.community)
                        if len(batch) >= BATCH_DOCS or batch_bytes >= BATCH_BYTES:
                            flush()
                    # unknown record types are skipped: newer writers may add some
                except ValueError as exc:
                    doc = record.get("doc")
                    result.report.rejected.append(
                        Rejection(bytes(doc) if isinstance(doc, bytes) else b"", None, str(exc))
                    )
            if batch:
                flush()
            # the trailer has verified here (records() raised otherwise)
            result.attachments = blobs_in.finish()
            result.report.rejected = once(result.report.rejected)
            result.news = tracker.count(result.report)
            now = int(time.time())
            if result.exporter != me:
                db.execute(
                    "INSERT INTO peers (public_key, last_seen, via) VALUES (?, ?, 'bundle')"
                    " ON CONFLICT (public_key) DO UPDATE SET last_seen = excluded.last_seen",
                    (result.exporter, now),
                )
                if any(c in joined for c in listed.communities):
                    result.learnt_whole = learn(home, result.exporter, listed, digest)
                    result.listed = listed
                carried.save(home, digest)
            db.execute(
                "INSERT OR IGNORE INTO bundles_seen (sha256, exporter, at) VALUES (?, ?, ?)",
                (digest, result.exporter, now),
            )
    result.already_imported = seen_before is not None
    result.skipped_communities = sorted(c.hex() for c in skipped)
    return result
