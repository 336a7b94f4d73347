"""Automerge documents in the store: a snapshot plus a log of later changes.

A local edit appends one signed change to the log instead of rewriting the
whole document; the log is folded into the snapshot once it grows. Open
documents are cached per process, and each is written under a lock because
the binding allows one transaction at a time (and segfaults on a transaction
left unfinished, so only `with doc.transaction()` is ever used).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
from automerge._automerge import Transaction
from automerge.core import ROOT, Document, ObjType, ScalarType

from p2p import binding, signing
from p2p.chunk import RawChange
from p2p.docref import OWNED_KINDS, DocRef
from p2p.errors import DamagedData
from p2p.identity import Identity
from p2p.store import Store

# Observers see every stored edit inside its transaction: (db, ref, new document,
# heads before). The derived indexes (p2p/index/) register here; core knows nothing of them.
Observer = Callable[[Any, DocRef, Document, list[bytes]], None]
OBSERVERS: list[Observer] = []


def notify(db: Any, ref: DocRef, doc: Document, old_heads: list[bytes]) -> None:
    for observer in OBSERVERS:
        observer(db, ref, doc, old_heads)


COMPACT_AFTER = 200  # log entries before the snapshot is rewritten
CACHE_SIZE = 64


def pack_heads(heads: list[bytes]) -> bytes:
    return msgpack.packb(sorted(heads))


def unpack_heads(blob: bytes) -> list[bytes]:
    return list(msgpack.unpackb(blob))


def as_raw(change: Any) -> RawChange:
    """An Automerge `Change` as our parsed form."""
    return RawChange(change.hash, change.actor_id, change.seq, tuple(change.deps), change.raw_bytes)


def to_py(doc: Document, obj: bytes = ROOT, heads: list[bytes] | None = None) -> Any:
    """Materialise a map or list of a document as plain Python values."""
    kind = doc.object_type(obj)
    if kind == ObjType.Map:
        out: dict[str, Any] = {}
        for key in doc.keys(obj, heads):
            got = doc.get(obj, key, heads)
            if got is not None:
                out[key] = _value(doc, got[0], got[1], heads)
        return out
    if kind == ObjType.List:
        return [_value(doc, v, oid, heads) for v, oid in doc.values(obj, heads)]
    return doc.text(obj, heads)


def _value(doc: Document, value: Any, obj_id: bytes, heads: list[bytes] | None) -> Any:
    if isinstance(value, ObjType):
        return to_py(doc, obj_id, heads)
    _kind, scalar = value
    return scalar


def get_obj(doc: Document, parent: bytes, key: str) -> bytes | None:
    got = doc.get(parent, key)
    if got is None or not isinstance(got[0], ObjType):
        return None
    return got[1]


def need_obj(doc: Document, parent: bytes | None, key: str) -> bytes:
    """An object our own document must hold (a missing one means a damaged store)."""
    got = get_obj(doc, parent, key) if parent is not None else None
    if got is None:
        raise KeyError(f"document has no {key!r} object")
    return got


def put_str(tx: Transaction, obj: bytes, key: str, value: str) -> None:
    tx.put(obj, key, ScalarType.Str, value)


def put_int(tx: Transaction, obj: bytes, key: str, value: int) -> None:
    tx.put(obj, key, ScalarType.Int, value)


class Documents:
    """Load, cache, edit and replace the documents of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: OrderedDict[bytes, Document] = OrderedDict()
        self._locks: dict[bytes, threading.Lock] = {}
        self._guard = threading.Lock()
        self.notices: list[str] = []  # damaged stored documents met by this process

    def lock(self, doc_id: bytes) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(doc_id, threading.Lock())

    def ref(self, doc_id: bytes) -> DocRef | None:
        row = self.store.db.execute(
            "SELECT community, kind, owner FROM docs WHERE id = ?", (doc_id,)
        ).fetchone()
        return DocRef(row[0], row[1], row[2]) if row else None

    def data(self, doc_id: bytes) -> bytes | None:
        """The stored bytes of a document (snapshot + log), loadable by Automerge."""
        row = self.store.db.execute("SELECT snapshot FROM docs WHERE id = ?", (doc_id,)).fetchone()
        if row is None:
            return None
        log = self.store.db.execute(
            "SELECT data FROM changes WHERE doc = ? ORDER BY n", (doc_id,)
        ).fetchall()
        return row[0] + b"".join(r[0] for r in log)

    def load(self, doc_id: bytes) -> Document | None:
        """The document as stored now; a cached copy is used only while it is current
        (another process, e.g. `p2p post` beside a running `p2p serve`, may have written)."""
        doc = self._cache.get(doc_id)
        if doc is not None:
            if sorted(doc.get_heads()) == self.heads(doc_id):
                self._cache.move_to_end(doc_id)
                return doc
            self.forget(doc_id)
        data = self.data(doc_id)
        if data is None:
            return None
        try:
            doc = binding.load(data, "stored document does not load", outside=False)
        except DamagedData as exc:
            repaired = self._repair(doc_id, str(exc))
            if repaired is None:
                return None
            doc = repaired
        self._remember(doc_id, doc)
        return doc

    def _repair(self, doc_id: bytes, reason: str) -> Document | None:
        """A stored document that no longer loads (written by an older version,
        or damaged): rebuilt from its snapshot and those of its logged signed
        changes that still apply; if even the snapshot fails, the document is
        set aside (kept in `set_aside`, removed from `docs`) so that one
        document never stops a command, and the next peer sends it again."""
        db = self.store.db
        row = db.execute(
            "SELECT community, kind, owner, snapshot FROM docs WHERE id = ?", (doc_id,)
        ).fetchone()
        if row is None:
            return None
        log = [
            r[0] for r in db.execute("SELECT data FROM changes WHERE doc = ? ORDER BY n", (doc_id,))
        ]
        base = row[3]
        doc: Document | None = None
        try:
            if base:
                doc = binding.load(base, outside=False)
            kept = base
            for data in log:
                try:
                    doc = binding.load(kept + data, outside=False)
                    kept += data
                except DamagedData:
                    continue
            if doc is not None:
                snapshot = binding.save(doc)
                doc = binding.reloads(snapshot)
        except DamagedData:
            doc = None
        from p2p.identity import fingerprint

        what = f"the {row[1]} of {fingerprint(row[2])}"
        with self.store.transaction() as tx:
            if doc is not None:
                self.notices.append(f"{what} was damaged in this store and has been repaired")
                self.replace(tx, DocRef(row[0], row[1], row[2]), doc, snapshot, rebuilt=True)
                tx.execute(
                    "INSERT INTO set_aside (doc, community, kind, owner, data, reason, at)"
                    " VALUES (?, ?, ?, ?, ?, ?, strftime('%s','now'))",
                    (doc_id, row[0], row[1], row[2], base + b"".join(log), "repaired: " + reason),
                )
                return doc
            tx.execute(
                "INSERT INTO set_aside (doc, community, kind, owner, data, reason, at)"
                " VALUES (?, ?, ?, ?, ?, ?, strftime('%s','now'))",
                (doc_id, row[0], row[1], row[2], base + b"".join(log), reason),
            )
            self.remove(tx, doc_id)
        self.notices.append(
            f"{what} was damaged in this store and was set aside; it will be fetched again"
            " at the next sync or import"
        )
        return None

    def remove(self, db: Any, doc_id: bytes) -> None:
        """Drop a document from the store (inside the caller's transaction);
        observers see it become empty."""
        ref = self.ref(doc_id)
        db.execute("DELETE FROM changes WHERE doc = ?", (doc_id,))
        db.execute("DELETE FROM docs WHERE id = ?", (doc_id,))
        db.execute("DELETE FROM doc_tips WHERE doc = ?", (doc_id,))
        self.forget(doc_id)
        if ref is not None:
            notify(db, ref, Document(), [])

    def set_aside(self) -> list[tuple[DocRef, str]]:
        """Documents found damaged in this store, with what was done about them."""
        return [
            (DocRef(r[0], r[1], r[2]), r[3])
            for r in self.store.db.execute(
                "SELECT community, kind, owner, reason FROM set_aside ORDER BY at"
            )
        ]

    def _remember(self, doc_id: bytes, doc: Document) -> None:
        self._cache[doc_id] = doc
        self._cache.move_to_end(doc_id)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def forget(self, doc_id: bytes | None = None) -> None:
        """Drop cached copies (after a rolled-back write, or another process's)."""
        if doc_id is None:
            self._cache.clear()
        else:
            self._cache.pop(doc_id, None)

    def ids(self, community: bytes | None = None, kind: str | None = None) -> list[bytes]:
        sql, args = "SELECT id FROM docs WHERE 1=1", list[object]()
        if community is not None:
            sql += " AND community = ?"
            args.append(community)
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        return [r[0] for r in self.store.db.execute(sql + " ORDER BY id", args)]

    def write(
        self, ref: DocRef, identity: Identity, edit: Callable[[Document, Transaction], None]
    ) -> RawChange:
        """Make one local change, sign it and store both in one transaction."""
        doc_id = ref.id
        with self.lock(doc_id):
            try:
                # load inside the write transaction: no other writer can slip in between
                with self.store.transaction() as db:
                    doc = self.load(doc_id)
                    fresh = doc is None
                    if doc is None:
                        doc = Document(actor_id=identity.public_key)
                    elif doc.get_actor() != identity.public_key:
                        doc.set_actor(identity.public_key)
                    before = doc.get_heads()
                    with doc.transaction() as tx:
                        edit(doc, tx)
                    if doc.get_heads() == before:
                        raise ValueError("the edit changed nothing")
                    change = as_raw(doc.get_last_local_change())
                    sig = signing.sign(identity, doc_id, change.hash)
                    if fresh:
                        db.execute(
                            "INSERT INTO docs (id, community, kind, owner, snapshot, heads)"
                            " VALUES (?, ?, ?, ?, ?, ?)",
                            (doc_id, ref.community, ref.kind, ref.owner, b"", b""),
                        )
                    self._append(db, doc_id, doc, [change])
                    self.set_tip(db, ref, change)
                    notify(db, ref, doc, before)
                    db.execute(
                        "INSERT OR REPLACE INTO sigs (doc, hash, signer, sig) VALUES (?, ?, ?, ?)",
                        (doc_id, *sig),
                    )
            except BaseException:
                self.forget(doc_id)
                raise
            self._remember(doc_id, doc)
            return change

    def _append(self, db: Any, doc_id: bytes, doc: Document, changes: list[RawChange]) -> None:
        """Add `changes` (which `doc` already holds) to the stored change log; once
        the log is long, fold it into a fresh snapshot instead, and only if that
        snapshot loads back (else the log stays: it loads, it is only slower)."""
        count = db.execute("SELECT count(*) FROM changes WHERE doc = ?", (doc_id,)).fetchone()[0]
        heads = pack_heads(doc.get_heads())
        if count + len(changes) > COMPACT_AFTER:
            try:
                snapshot = binding.save(doc)
                binding.reloads(snapshot)
            except DamagedData:
                snapshot = None
            if snapshot is not None:
                db.execute("DELETE FROM changes WHERE doc = ?", (doc_id,))
                fold = "UPDATE docs SET snapshot = ?, heads = ? WHERE id = ?"
                db.execute(fold, (snapshot, heads, doc_id))
                return
        db.executemany(
            "INSERT INTO changes (doc, n, data) VALUES (?, ?, ?)",
            [(doc_id, count + i, c.data) for i, c in enumerate(changes)],
        )
        db.execute("UPDATE docs SET heads = ? WHERE id = ?", (heads, doc_id))

    def extend(
        self, db: Any, ref: DocRef, doc: Document, changes: list[RawChange], old_heads: list[bytes]
    ) -> None:
        """Store received `changes` by appending them to the log (inside the caller's
        transaction), as a local write does; no `save()`.

        The caller loaded `doc` from exactly the stored bytes followed by these
        changes, so what is stored is what just loaded. Each change must build on all
        heads of its time (the first on `old_heads`, each next on the one before), the
        shape `p2p.exchange` reads deltas from. Once the log is long it is folded into
        the snapshot, and only if the saved form loads back; else the log stays (it
        loads, it is only slower)."""
        self._append(db, ref.id, doc, changes)
        notify(db, ref, doc, old_heads)

    def tip(self, ref: DocRef) -> tuple[bytes, int] | None:
        """(hash, seq) of the owner's latest change of an author-owned document, known
        without loading it: only while that change is the document's one head."""
        row = self.store.db.execute(
            "SELECT hash, seq FROM doc_tips WHERE doc = ?", (ref.id,)
        ).fetchone()
        if row is None or self.heads(ref.id) != [row[0]]:
            return None
        return row[0], row[1]

    def set_tip(self, db: Any, ref: DocRef, change: RawChange | None) -> None:
        """Remember the owner's change that is now an owned document's one head
        (None: forget; a row that no longer matches the heads is ignored anyway)."""
        if change is None or ref.kind not in OWNED_KINDS or change.actor != ref.owner:
            db.execute("DELETE FROM doc_tips WHERE doc = ?", (ref.id,))
            return
        db.execute(
            "INSERT OR REPLACE INTO doc_tips (doc, hash, seq) VALUES (?, ?, ?)",
            (ref.id, change.hash, change.seq),
        )

    def replace(
        self,
        db: Any,
        ref: DocRef,
        doc: Document,
        snapshot: bytes | None = None,
        *,
        rebuilt: bool = False,
    ) -> None:
        """Store a merged document wholesale (inside the caller's transaction).

        `snapshot` is `doc`'s saved form when the caller already has it (the
        received bytes of a new document, or a save it checked loads back):
        saving is a third of an import's time. `rebuilt`: changes were taken
        out (a fork or a demotion), so observers must start from scratch."""
        doc_id = ref.id
        old_heads = [] if rebuilt else self.heads(doc_id)
        if snapshot is None:
            snapshot = doc.save()
        db.execute("DELETE FROM changes WHERE doc = ?", (doc_id,))
        db.execute(
            "INSERT INTO docs (id, community, kind, owner, snapshot, heads)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET snapshot = excluded.snapshot, heads = excluded.heads",
            (doc_id, ref.community, ref.kind, ref.owner, snapshot, pack_heads(doc.get_heads())),
        )
        notify(db, ref, doc, old_heads)

    def heads(self, doc_id: bytes) -> list[bytes]:
        row = self.store.db.execute("SELECT heads FROM docs WHERE id = ?", (doc_id,)).fetchone()
        return unpack_heads(row[0]) if row and row[0] else []

    def sig_lookup(self, doc_id: bytes) -> Callable[[bytes, bytes], bytes | None]:
        def lookup(change_hash: bytes, signer: bytes) -> bytes | None:
            row = self.store.db.execute(
                "SELECT sig FROM sigs WHERE doc = ? AND hash = ? AND signer = ?",
                (doc_id, change_hash, signer),
            ).fetchone()
            return row[0] if row else None

        return lookup

    def iter_changes(self, doc_id: bytes, since: list[bytes] | None = None) -> Iterator[RawChange]:
        doc = self.load(doc_id)
        if doc is None:
            return
        yield from binding.changes(doc, since or [])
