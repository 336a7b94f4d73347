"""The acceptance path: the only way content from outside enters a store.

Every transport (bundle, drop box, LAN) hands its document records here. For
each document: drop what is already known, check every signature carried,
require each change to be vouched for by its own author (directly or through
a signed same-author descendant), require the author may write that document,
require each author's changes to form one chain (`p2p/sequence.py`: no gaps,
each change on its author's previous one, forks resolved by one rule), apply
the community document's moderation rules (`p2p/moderation.py`), keep changes
whose dependencies have not arrived as pending (bounded), and check that the
document about to be committed loads back. Each document is applied under its
own savepoint: a document that fails any of this is refused on its own, with
a reason, and the rest of the batch still applies.
"""

from __future__ import annotations

import gc
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import msgpack
from automerge.core import Document

from p2p import amformat, binding, chunk, moderation, sequence, signing
from p2p.chunk import RawChange
from p2p.docref import COMMUNITY, KINDS, OWNED_KINDS, DocRef
from p2p.documents import Documents
from p2p.errors import DamagedData
from p2p.sequence import Fork

MAX_PENDING_PER_DOC = 100_000
# Changes waiting for their dependencies, per author (document owner) and in all.
PENDING_PER_AUTHOR = 20_000
PENDING_BYTES_PER_AUTHOR = 32 * 1024 * 1024
PENDING_TOTAL = 200_000
PENDING_BYTES_TOTAL = 256 * 1024 * 1024
PENDING_EXPIRY = 60 * 24 * 3600  # seconds: a dependency that never came in 60 days
MAX_PROOFS = 16  # forks kept as proof per author and document


class Line(NamedTuple):
    """A saved author-owned document that is its owner's one line of changes
    (`amformat.line_of`): how many, and the last one, its one head."""

    changes: int
    head: bytes


class Incoming:
    """One document's worth of changes from outside, with the signatures sent.

    `loaded`/`saved`: set when the changes came as a saved document (the bytes are
    stored as they are if accepted whole). `line`: set when those bytes are the
    owner's one line; its changes are then listed only if something asks for them
    (listing a 20k-change document costs more than loading it)."""

    __slots__ = ("ref", "claimed_id", "sigs", "loaded", "saved", "line", "_changes")

    def __init__(
        self,
        ref: DocRef,
        claimed_id: bytes,
        changes: list[RawChange] | None,
        sigs: list[signing.Sig],
        loaded: Document | None = None,
        saved: bytes | None = None,
        line: Line | None = None,
    ) -> None:
        if changes is None and loaded is None:
            raise ValueError("changes or a loaded document are needed")
        self.ref, self.claimed_id, self.sigs = ref, claimed_id, sigs
        self.loaded, self.saved, self.line = loaded, saved, line
        self._changes = changes

    @property
    def changes(self) -> list[RawChange]:
        """Every change, in causal order; ValueError if the binding cannot list them."""
        if self._changes is None:
            assert self.loaded is not None
            try:
                with _no_cycle_collection():
                    self._changes = binding.changes(self.loaded)
            except DamagedData as exc:
                raise ValueError(f"saved document does not load: {exc}") from None
        return self._changes

    def heads(self) -> list[bytes]:
        """The hashes no carried change depends on."""
        if self.line is not None:
            return [self.line.head]
        hashes = {c.hash for c in self.changes}
        return sorted(hashes - {d for c in self.changes for d in c.deps})


@dataclass
class Rejection:
    doc: bytes
    change: bytes | None
    reason: str


@dataclass
class Report:
    applied: int = 0
    already: int = 0
    pending: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    docs_changed: list[DocRef] = field(default_factory=list)
    new_docs: list[DocRef] = field(default_factory=list)
    forks: list[tuple[DocRef, Fork]] = field(default_factory=list)
    fork_lines: list[str] = field(default_factory=list)  # one plain line per fork, for people
    set_aside: int = 0  # changes this store held that a fork or a demotion set aside

    def merge(self, other: Report) -> None:
        self.applied += other.applied
        self.already += other.already
        self.pending += other.pending
        self.rejected += other.rejected
        self.docs_changed += other.docs_changed
        self.new_docs += other.new_docs
        self.forks += other.forks
        self.fork_lines += other.fork_lines
        self.set_aside += other.set_aside


MAX_INFLATED = 64 * 1024 * 1024  # as large as a record may be


def inflate(data: bytes) -> bytes:
    """zlib data, never inflated past MAX_INFLATED (no decompression bombs)."""
    z = zlib.decompressobj()
    try:
        out = z.decompress(data, MAX_INFLATED)
    except zlib.error as exc:
        raise ValueError(f"bad compressed change data ({exc})") from exc
    if z.unconsumed_tail:
        raise ValueError("compressed change data inflates beyond the record limit")
    if not z.eof or z.unused_data:
        raise ValueError("compressed change data is cut short or has trailing bytes")
    return out


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Parsing and judging a document makes a few small objects per change (a 1M-post
    import: millions), none of them in reference cycles; the cycle collector, set off
    by allocation counts, would walk every live object again and again (8% of such an
    import). Objects are still freed by reference counting meanwhile."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _bin(value: object) -> bytes:
    """A byte string from a record; never `bytes(n)` of a number someone chose."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError("expected bytes")


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    raise TypeError("expected a string")


def from_record(
    record: dict, *, priced: bool = False, vouched: list[bytes] | None = None
) -> Incoming:
    """Decode a `doc` record (see docs/bundle-format.md); ValueError if malformed.
    `priced`: its saved bytes already passed `binding.check_inflation`. `vouched`:
    the heads our prefetch process loaded these very bytes with (`binding.Vouched`);
    if they are the owner's one line's head, this process does not load them."""
    try:
        ref = DocRef(_bin(record["community"]), _text(record["kind"]), _bin(record["owner"]))
        claimed = _bin(record["doc"])
        enc = record["enc"]
        data = _bin(record["data"])
        sigs = [(_bin(h), _bin(s), _bin(g)) for h, s, g in record.get("sigs", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError("malformed document record") from exc
    if enc == "save":
        if not data:
            raise ValueError("empty saved document")
        try:
            if vouched is not None and ref.kind in OWNED_KINDS:  # priced before it was sent
                line = amformat.line_of(data, ref.owner)
                if line is not None and vouched == [line[1]]:
                    elsewhere = cast(Document, binding.Vouched(data, vouched))
                    return Incoming(ref, claimed, None, sigs, elsewhere, data, Line(*line))
            loaded = binding.load(data, outside=not priced)
            line = amformat.line_of(data, ref.owner) if ref.kind in OWNED_KINDS else None
            if line is not None:
                heads = binding.call("document heads could not be read", loaded.get_heads)
                if heads == [line[1]]:
                    return Incoming(ref, claimed, None, sigs, loaded, data, Line(*line))
            with _no_cycle_collection():
                changes = binding.changes(loaded)
        except DamagedData as exc:
            raise ValueError(f"saved document does not load: {exc}") from None
        return Incoming(ref, claimed, changes, sigs, loaded, data)
    if enc == "changes-zlib":
        data = inflate(data)
        enc = "changes"
    if enc == "changes":
        binding.check_inflation(data)  # priced before anything loads it
        try:
            changes = list(chunk.split(data))
        except chunk.ChunkError as exc:
            raise ValueError(f"bad change data ({exc})") from exc
        return Incoming(ref, claimed, changes, sigs)
    raise ValueError("unknown document encoding")


def vouched_line(inc: Incoming) -> Line | None:
    """The owner's one line `inc` carries (`Incoming.line`), when its only signatures
    are the owner's, on the line's last change, and verify: then every change of it
    is vouched for and follows the rules (see `Acceptor._new_line`)."""
    line, ref = inc.line, inc.ref
    if line is None or ref.kind not in OWNED_KINDS or not inc.sigs:
        return None
    if any(h != line.head or who != ref.owner for h, who, _ in inc.sigs):
        return None
    if not all(signing.check(ref.id, sig) for sig in inc.sigs):
        return None
    return line


def _role_at(doc: Document, heads: list[bytes], member: bytes) -> tuple[str | None, bool]:
    return moderation.role_at(doc, heads, member)


@dataclass
class Verdict:
    """What the rules say about a pool of changes for one document."""

    valid: dict[tuple[bytes, bytes], bytes]  # (hash, signer) -> signature, checked
    ready: list[bytes]  # acceptable now, in dependency order
    rejected: dict[bytes, str]
    waiting: list[bytes]  # dependencies missing: keep pending
    bad_sigs: list[bytes]
    lost: set[bytes] = field(default_factory=set)  # set aside (fork, demotion), known or not
    forks: list[Fork] = field(default_factory=list)
    vouched: set[bytes] = field(default_factory=set)


def evaluate(
    ref: DocRef,
    pool: dict[bytes, RawChange],
    sigs: Iterable[signing.Sig],
    known: set[bytes],
    existing: bytes,
    community_owner: bytes,
    known_changes: Mapping[bytes, RawChange] | None = None,
) -> Verdict:
    """Apply every acceptance rule to `pool`; touches no store.

    `known` are change hashes already present, `existing` their bytes and
    `known_changes` (in causal order) their parsed form, needed to judge each
    author's sequence and the community document's roles of the time.
    """
    doc_id = ref.id
    valid: dict[tuple[bytes, bytes], bytes] = {}
    bad: list[bytes] = []
    for sig in sigs:
        h, signer, _ = sig
        if (h, signer) in valid or h not in pool:
            continue
        if pool[h].actor == signer and signing.check(doc_id, sig):
            valid[(h, signer)] = sig[2]
        else:
            bad.append(h)

    order = signing.topo_order(pool)
    vouched = signing.covered(order, pool, valid.keys())
    ready: list[bytes] = []
    waiting: list[bytes] = []
    present = set(known)
    rejected: dict[bytes, str] = {}
    for h in order:
        c = pool[h]
        if rejected and any(d in rejected for d in c.deps):
            rejected[h] = "depends on a rejected change"
        elif not present.issuperset(c.deps):
            waiting.append(h)
            continue
        elif h not in vouched:
            rejected[h] = "not signed by its author"
        elif ref.kind in OWNED_KINDS and c.actor != ref.owner:
            rejected[h] = f"only its owner may write this {ref.kind}"
        else:
            ready.append(h)
        present.add(h)
    in_order = set(order)
    waiting += [h for h in pool if h not in in_order]

    known_map: Mapping[bytes, RawChange] = known_changes if known_changes is not None else {}
    outcome = sequence.check(known_map, ready, pool)
    rejected.update(outcome.rejected)
    ready = outcome.keep
    lost = set(outcome.lost)

    if ref.kind == COMMUNITY:
        every = {h: c for h, c in known_map.items() if h not in lost}
        every.update((h, pool[h]) for h in ready)
        base = (
            existing
            if not (lost & set(known_map))
            else b"".join(c.data for h, c in known_map.items() if h not in lost)
        )
        while True:
            if all(c.actor == community_owner for c in every.values()):
                break
            candidate = binding.load(base + b"".join(pool[h].data for h in ready), outside=False)
            refused = binding.call(
                "community document could not be judged",
                moderation.offenders,
                candidate,
                every,
                community_owner,
            )
            if not refused:
                break
            gone = sequence.descendants(refused, every)
            for h in gone:
                if h in known_map:
                    lost.add(h)
                else:
                    rejected[h] = refused.get(h, "depends on a rejected change")
            every = {h: c for h, c in every.items() if h not in gone}
            ready = [h for h in ready if h not in gone]
            base = b"".join(c.data for h, c in known_map.items() if h in every)
    # a waiting change that builds on something refused now will never apply
    waiting = [h for h in waiting if not any(d in rejected for d in pool[h].deps)]
    return Verdict(valid, ready, rejected, waiting, bad, lost, outcome.forks, vouched)


class Acceptor:
    """Runs the acceptance path against one store."""

    def __init__(self, docs: Documents, communities: dict[bytes, bytes]) -> None:
        """`communities` maps each joined community id to its owner key."""
        self.docs = docs
        self.store = docs.store
        self.communities = communities
        # told of each document as committed (the loaded object, no second load):
        # an import counts what is new from it (p2p/news.py)
        self.committed: Callable[[DocRef, Document], None] | None = None

    def accept(self, batch: Iterable[Incoming]) -> Report:
        report = Report()
        groups: dict[bytes, list[Incoming]] = defaultdict(list)
        for inc in batch:
            reason = self._check_ref(inc)
            if reason:
                report.rejected.append(Rejection(inc.claimed_id, None, reason))
                continue
            groups[inc.ref.id].append(inc)
        touched: list[bytes] = []
        try:
            with _no_cycle_collection(), self.store.transaction() as db:
                db.execute(
                    "DELETE FROM pending WHERE received < ?", (int(time.time()) - PENDING_EXPIRY,)
                )
                for doc_id, items in groups.items():
                    touched.append(doc_id)
                    report.merge(self._accept_isolated(db, doc_id, items))
        finally:
            for doc_id in touched:
                self.docs.forget(doc_id)
        return report

    def _name(self, community: bytes, member: bytes) -> str:
        """A member's display name from their profile in this store, if any."""
        from p2p.docref import PROFILE
        from p2p.documents import to_py

        try:
            doc = self.docs.load(DocRef(community, PROFILE, member).id)
            name = to_py(doc).get("name") if doc is not None else None
        except (DamagedData, ValueError, TypeError, KeyError):
            return ""
        return name if isinstance(name, str) else ""

    def _check_ref(self, inc: Incoming) -> str | None:
        if inc.ref.kind not in KINDS:
            return f"unknown document kind {inc.ref.kind!r}"
        if inc.ref.id != inc.claimed_id:
            return "document id does not match its community, kind and owner"
        owner = self.communities.get(inc.ref.community)
        if owner is None:
            return "document of a community this store has not joined"
        if inc.ref.kind == COMMUNITY and inc.ref.owner != owner:
            return "community document not owned by the community's owner"
        return None

    def _accept_isolated(self, db: Any, doc_id: bytes, items: list[Incoming]) -> Report:
        """One document under its own savepoint: its failure is its own."""
        db.execute("SAVEPOINT accept_doc")
        try:
            report = self._accept_doc(db, doc_id, items)
        except (DamagedData, ValueError) as exc:
            db.execute("ROLLBACK TO accept_doc")
            db.execute("RELEASE accept_doc")
            self.docs.forget(doc_id)
            reason = str(exc) or "document refused"
            return Report(rejected=[Rejection(doc_id, None, reason)])
        except BaseException:
            db.execute("ROLLBACK TO accept_doc")
            db.execute("RELEASE accept_doc")
            raise
        db.execute("RELEASE accept_doc")
        return report

    def _accept_doc(self, db: Any, doc_id: bytes, items: list[Incoming]) -> Report:
        ref = items[0].ref
        quick = self._new_line(db, ref, items) or self._owner_next(db, ref, items)
        if quick is not None:
            return quick
        report = Report()
        existing = self.docs.load(doc_id)  # repairs or sets aside a stored doc that fails
        existing_data = self.docs.data(doc_id) if existing is not None else None
        known_changes = (
            {c.hash: c for c in binding.changes(existing)} if existing is not None else {}
        )
        known = set(known_changes)
        # changes set aside by a fork stay candidates: the kept branch is then a
        # function of every change ever seen, whatever the order they came in
        held = {
            r[0]: r[1]
            for r in db.execute("SELECT hash, data FROM forks_held WHERE doc = ?", (doc_id,))
        }

        pool: dict[bytes, RawChange] = {}
        sigs: list[signing.Sig] = []
        for inc in items:
            for c in inc.changes:
                if c.hash in known or c.hash in held:
                    report.already += 1
                else:
                    pool[c.hash] = c
            sigs += inc.sigs
        incoming_hashes = set(pool)
        if incoming_hashes:
            for h, data in held.items():
                if h not in known:
                    pool[h] = chunk.parse_one(data)[0]
            held_list = list(held)
            for i in range(0, len(held_list), 500):
                part = held_list[i : i + 500]
                sigs += [
                    tuple(r)
                    for r in db.execute(
                        "SELECT hash, signer, sig FROM sigs WHERE doc = ? AND hash IN"
                        f" ({','.join('?' * len(part))})",
                        (doc_id, *part),
                    )
                ]
        parked: set[bytes] = set()  # hashes with rows in pending / pending_sigs
        for h, data in db.execute("SELECT hash, data FROM pending WHERE doc = ?", (doc_id,)):
            parked.add(h)
            if h not in pool and h not in known:
                try:
                    pool[h] = chunk.parse_one(data)[0]
                except chunk.ChunkError:
                    db.execute("DELETE FROM pending WHERE doc = ? AND hash = ?", (doc_id, h))
        parked_sigs = [
            tuple(r)
            for r in db.execute(
                "SELECT hash, signer, sig FROM pending_sigs WHERE doc = ?", (doc_id,)
            )
        ]
        parked.update(s[0] for s in parked_sigs)
        sigs += parked_sigs
        if not pool:
            return report

        verdict = evaluate(
            ref,
            pool,
            sigs,
            known,
            existing_data or b"",
            self.communities[ref.community],
            known_changes,
        )
        valid, ready, rejected = verdict.valid, verdict.ready, verdict.rejected
        for h in verdict.bad_sigs:
            if h in incoming_hashes:
                report.rejected.append(Rejection(doc_id, h, "signature does not verify"))
        for h, reason in rejected.items():
            if h in incoming_hashes:
                report.rejected.append(Rejection(doc_id, h, reason))
        waiting = self._admit_pending(db, ref, pool, verdict, incoming_hashes, report)

        lost = verdict.lost
        lost_known = lost & known
        fresh_forks = [
            f
            for f in verdict.forks
            if db.execute(
                "SELECT 1 FROM forks WHERE doc = ? AND actor = ? AND seq = ? AND dropped = ?",
                (doc_id, f.actor, f.seq, f.dropped),
            ).fetchone()
            is None
        ]
        if fresh_forks:
            self._keep_proof(db, ref, fresh_forks, verdict, pool, known_changes)
            report.forks += [(ref, f) for f in fresh_forks]
            report.fork_lines += [
                describe_fork(ref, f, self._name(ref.community, f.actor)) for f in fresh_forks
            ]
        back = [h for h in held if h not in lost]
        db.executemany(
            "DELETE FROM forks_held WHERE doc = ? AND hash = ?", [(doc_id, h) for h in back]
        )
        if lost:
            db.executemany(
                "INSERT OR IGNORE INTO forks_held (doc, hash, data) VALUES (?, ?, ?)",
                [
                    (doc_id, h, (pool[h] if h in pool else known_changes[h]).data)
                    for h in lost
                    if h in pool or h in known_changes
                ],
            )
            _keep_sigs(db, doc_id, valid, lost)
        if ready or lost_known:
            ready = list(ready)
            refused = self._commit(
                db, ref, items, ready, pool, known_changes, lost_known, existing_data
            )
            for h, reason in refused.items():
                rejected[h] = reason
                if h in incoming_hashes:
                    report.rejected.append(Rejection(doc_id, h, reason))
        if ready or lost_known:
            _keep_sigs(db, doc_id, valid, set(ready))
            report.applied += len(ready)
            report.set_aside += len(lost_known)
            report.docs_changed.append(ref)
            if existing is None:
                report.new_docs.append(ref)

        # only rows that exist: a million-change document must not cost a million deletes
        done = [(doc_id, h) for h in (*ready, *rejected, *lost) if h in parked]
        db.executemany("DELETE FROM pending WHERE doc = ? AND hash = ?", done)
        db.executemany("DELETE FROM pending_sigs WHERE doc = ? AND hash = ?", done)
        report.pending += len([h for h in waiting if h in incoming_hashes])
        return report

    def _new_line(self, db: Any, ref: DocRef, items: list[Incoming]) -> Report | None:
        """A document this store has never held, arriving saved as its owner's one line
        (`Incoming.line`) with the owner's signature on its one head: every rule holds
        without listing its changes. They are all by the owner (its only actor), each
        follows the one before (no gap, no fork), and the signature on the head vouches
        for every change beneath it, since `Document.load` refused the bytes unless the
        hashes it rebuilt from them match the heads they name. Anything else (another
        signature, pending or held changes of it, a stored copy) returns None, and the
        full path decides."""
        if len(items) != 1:
            return None
        inc, doc_id = items[0], ref.id
        line = vouched_line(inc)
        if line is None:
            return None
        assert inc.loaded is not None and inc.saved is not None
        stored = db.execute("SELECT 1 FROM docs WHERE id = ?", (doc_id,)).fetchone()
        if stored or _held(db, doc_id, "pending", "pending_sigs", "forks_held"):
            return None
        tip = RawChange(line.head, ref.owner, line.changes, (), b"")
        self._store(db, ref, inc.loaded, inc.saved, tip)
        _keep_sigs(db, doc_id, {(h, who): sig for h, who, sig in inc.sigs}, {line.head})
        return Report(applied=line.changes, docs_changed=[ref], new_docs=[ref])

    def _owner_next(self, db: Any, ref: DocRef, items: list[Incoming]) -> Report | None:
        """The everyday case, judged without loading the stored document's history:
        an author-owned document this store holds, receiving its owner's next changes.

        What the rules need of the stored document is its owner's latest change
        (`Documents.tip`: hash and seq, while it is the one head) and the log of
        changes since the snapshot: a change with a higher seq cannot be stored
        yet, one that builds on the tip or on another arriving change has its
        dependencies. The same `evaluate` then judges signatures, ownership and
        sequence. The document is loaded once, from the stored bytes followed by
        the accepted changes, and those changes are appended to the log: the
        bytes stored are the bytes that just loaded. Anything else (a change at
        or below the tip's seq that is not in the log, a fork, a change waiting
        for others, a change the binding refuses, changes that do not continue
        the one head) returns None, and the full path decides, as before."""
        if ref.kind not in OWNED_KINDS or any(inc.loaded is not None for inc in items):
            return None
        tip = self.docs.tip(ref)
        if tip is None:
            return None
        doc_id = ref.id
        if _held(db, doc_id, "pending", "forks_held"):
            return None
        try:
            log = [
                chunk.parse_one(r[0])[0]
                for r in db.execute("SELECT data FROM changes WHERE doc = ? ORDER BY n", (doc_id,))
            ]
        except chunk.ChunkError:
            return None
        known_changes: dict[bytes, RawChange] = {c.hash: c for c in log}
        if tip[0] not in known_changes:  # only its header matters to the rules
            known_changes[tip[0]] = RawChange(tip[0], ref.owner, tip[1], (), b"")
        report = Report()
        pool: dict[bytes, RawChange] = {}
        sigs: list[signing.Sig] = []
        for inc in items:
            for c in inc.changes:
                if c.hash in known_changes:
                    report.already += 1
                elif c.actor == ref.owner and c.seq <= tip[1]:
                    return None  # stored before the log began, or a fork: the full path tells
                elif not all(d in known_changes or d in pool for d in c.deps):
                    return None  # builds on something older (or missing)
                else:
                    pool[c.hash] = c
            sigs += inc.sigs
        if not pool:
            return report
        verdict = evaluate(
            ref,
            pool,
            sigs,
            set(known_changes),
            b"",
            self.communities[ref.community],
            known_changes,
        )
        ready = verdict.ready
        if verdict.waiting or verdict.lost or verdict.forks:
            return None
        old_heads = [tip[0]]
        if ready:
            if not _chained(old_heads, ready, pool):
                return None
            data = self.docs.data(doc_id) or b""
            try:
                merged = binding.load(data + b"".join(pool[h].data for h in ready), outside=False)
                if merged.get_heads() != [ready[-1]]:
                    return None
            except DamagedData:
                return None  # the full path finds the change at fault
        for h in verdict.bad_sigs:
            report.rejected.append(Rejection(doc_id, h, "signature does not verify"))
        for h, reason in verdict.rejected.items():
            report.rejected.append(Rejection(doc_id, h, reason))
        if not ready:
            return report
        self._extend(db, ref, merged, [pool[h] for h in ready], old_heads)
        _keep_sigs(db, doc_id, verdict.valid, set(ready))
        report.applied += len(ready)
        report.docs_changed.append(ref)
        return report

    def _commit(
        self,
        db: Any,
        ref: DocRef,
        items: list[Incoming],
        ready: list[bytes],
        pool: Mapping[bytes, RawChange],
        known_changes: Mapping[bytes, RawChange],
        lost_known: set[bytes],
        existing_data: bytes | None,
    ) -> dict[bytes, str]:
        """Store the document with `ready` applied (and `lost_known` removed),
        only once its saved form is known to load back. A change the binding
        cannot apply is found by bisection and refused on its own, with what
        depends on it; returns those refused (`ready` is updated in place)."""
        first = items[0]
        if (
            not known_changes
            and len(items) == 1
            and first.loaded is not None
            and first.saved is not None
            and set(ready) == {c.hash for c in first.changes}
        ):
            # a new document accepted whole: the received bytes loaded, keep them as they are
            heads = first.loaded.get_heads()
            last = next((c for c in reversed(first.changes) if [c.hash] == heads), None)
            self._store(db, ref, first.loaded, first.saved, last)
            return {}
        if lost_known:
            base = b"".join(c.data for h, c in known_changes.items() if h not in lost_known)
        else:
            base = existing_data or b""
        refused: dict[bytes, str] = {}
        old_heads = self.docs.heads(ref.id)
        for _attempt in range(4):
            try:
                merged = binding.load(base + b"".join(pool[h].data for h in ready), outside=False)
                heads = merged.get_heads()
                if (
                    existing_data is not None
                    and not lost_known
                    and ready
                    and heads == [ready[-1]]
                    and _chained(old_heads, ready, pool)
                ):
                    # the stored bytes and these changes just loaded: append, no save
                    self._extend(db, ref, merged, [pool[h] for h in ready], old_heads)
                    return refused
                saved = binding.save(merged)
                again = binding.reloads(saved)
            except DamagedData as exc:
                bad = self._first_bad(base, ready, pool)
                if bad is None:
                    raise
                gone = sequence.descendants([bad], {h: pool[h] for h in ready})
                for h in gone:
                    refused[h] = str(exc) if h == bad else "depends on a rejected change"
                ready[:] = [h for h in ready if h not in gone]
                if not ready and not lost_known:
                    return refused
                continue
            head = heads[0] if len(heads) == 1 and heads[0] not in lost_known else None
            tip = (known_changes.get(head) or pool.get(head)) if head is not None else None
            self._store(db, ref, again, saved, tip, rebuilt=bool(lost_known))
            return refused
        raise DamagedData("too many changes of this document fail to apply")

    def _store(
        self,
        db: Any,
        ref: DocRef,
        doc: Document,
        saved: bytes,
        tip: RawChange | None,
        *,
        rebuilt: bool = False,
    ) -> None:
        """Store a document whole as `saved` (bytes known to load as `doc`), with the
        owner's change that is now its one head (`tip`, or None)."""
        self.docs.replace(db, ref, doc, saved, rebuilt=rebuilt)
        self.docs.set_tip(db, ref, tip)
        if self.committed is not None:
            self.committed(ref, doc)

    def _extend(
        self, db: Any, ref: DocRef, merged: Document, line: list[RawChange], old_heads: list[bytes]
    ) -> None:
        """Store a line of accepted changes that `merged` (stored bytes + `line`)
        just loaded with, by appending them; its last change is the owner's tip."""
        self.docs.extend(db, ref, merged, line, old_heads)
        self.docs.set_tip(db, ref, line[-1])
        if self.committed is not None:
            self.committed(ref, merged)

    @staticmethod
    def _first_bad(
        base: bytes, ready: list[bytes], pool: Mapping[bytes, RawChange]
    ) -> bytes | None:
        """The first of `ready` after which the document no longer loads and saves back."""

        def fine(n: int) -> bool:
            try:
                binding.reloads(
                    binding.save(
                        binding.load(
                            base + b"".join(pool[h].data for h in ready[:n]), outside=False
                        )
                    )
                )
                return True
            except DamagedData:
                return False

        if not fine(0):
            return None
        lo, hi = 0, len(ready)  # fine(lo) holds, fine(hi) fails
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fine(mid):
                lo = mid
            else:
                hi = mid
        return ready[hi - 1]

    def _admit_pending(
        self,
        db: Any,
        ref: DocRef,
        pool: Mapping[bytes, RawChange],
        verdict: Verdict,
        incoming: set[bytes],
        report: Report,
    ) -> list[bytes]:
        """Store the changes that wait for dependencies, if they may wait:
        signed by their author, an author who may write this document, and
        within the per-author and total bounds. Returns those kept."""
        doc_id = ref.id
        kept: list[bytes] = []
        refused: list[tuple[bytes, str]] = []
        fresh = [h for h in verdict.waiting if h in incoming]
        already = [h for h in verdict.waiting if h not in incoming]
        if not fresh:
            return already
        count, size = db.execute(
            "SELECT count(*), coalesce(sum(length(data)), 0) FROM pending"
            " WHERE community = ? AND owner = ?",
            (ref.community, ref.owner),
        ).fetchone()
        total, total_size = db.execute(
            "SELECT count(*), coalesce(sum(length(data)), 0) FROM pending"
        ).fetchone()
        per_doc = len(already)
        for h in fresh:
            c = pool[h]
            if h not in verdict.vouched:
                refused.append(
                    (h, "waits for changes not received and is not signed by its author")
                )
            elif ref.kind in OWNED_KINDS and c.actor != ref.owner:
                refused.append((h, f"only its owner may write this {ref.kind}"))
            elif (
                per_doc >= MAX_PENDING_PER_DOC
                or count >= PENDING_PER_AUTHOR
                or size + len(c.data) > PENDING_BYTES_PER_AUTHOR
            ):
                refused.append((h, "too many changes from this author waiting for earlier ones"))
            elif total >= PENDING_TOTAL or total_size + len(c.data) > PENDING_BYTES_TOTAL:
                refused.append((h, "too many changes waiting for earlier ones in this store"))
            else:
                kept.append(h)
                per_doc += 1
                count += 1
                total += 1
                size += len(c.data)
                total_size += len(c.data)
        if refused:
            # one line per document for a flood, not one per change
            reasons = sorted({r for _, r in refused})
            for reason in reasons:
                n = sum(1 for _, r in refused if r == reason)
                first = next(h for h, r in refused if r == reason)
                report.rejected.append(
                    Rejection(doc_id, first, reason if n == 1 else f"{reason} ({n} changes)")
                )
        now = int(time.time())
        db.executemany(
            "INSERT OR IGNORE INTO pending (doc, hash, community, kind, owner, data, received)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(doc_id, h, ref.community, ref.kind, ref.owner, pool[h].data, now) for h in kept],
        )
        keep = set(kept)
        db.executemany(
            "INSERT OR IGNORE INTO pending_sigs (doc, hash, signer, sig) VALUES (?, ?, ?, ?)",
            [(doc_id, h, s, g) for (h, s), g in verdict.valid.items() if h in keep],
        )
        return kept + already

    def _keep_proof(
        self,
        db: Any,
        ref: DocRef,
        forks: list[Fork],
        verdict: Verdict,
        pool: Mapping[bytes, RawChange],
        known_changes: Mapping[bytes, RawChange],
    ) -> None:
        """Keep both sides of each fork with a signature that covers it."""
        every: dict[bytes, RawChange] = dict(known_changes)
        every.update(pool)
        stored = self.docs.sig_lookup(ref.id)
        now = int(time.time())
        for f in forks:
            held = db.execute(
                "SELECT count(*) FROM forks WHERE doc = ? AND actor = ?", (ref.id, f.actor)
            ).fetchone()[0]
            # an author forking again and again: the first proofs suffice, the
            # rest are recorded (so reported once) without their changes
            proof = (
                msgpack.packb(
                    [_signed_path(h, every, verdict.valid, stored) for h in (f.kept, f.dropped)]
                )
                if held < MAX_PROOFS
                else msgpack.packb(None)
            )
            db.execute(
                "INSERT OR IGNORE INTO forks (doc, actor, seq, kept, dropped, proof, detected)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    ref.id,
                    f.actor,
                    f.seq,
                    f.kept,
                    f.dropped,
                    proof,
                    now,
                ),
            )


def _chained(heads: list[bytes], ready: list[bytes], pool: Mapping[bytes, RawChange]) -> bool:
    """Whether `ready` is one line of changes on top of all of `heads`, each on the
    one before: the shape of a document's change log (see `Documents.extend`)."""
    prev = set(heads)
    for h in ready:
        if set(pool[h].deps) != prev:
            return False
        prev = {h}
    return True


def _signed_path(
    start: bytes,
    every: Mapping[bytes, RawChange],
    valid: Mapping[tuple[bytes, bytes], bytes],
    stored: Any,
) -> dict:
    """`start` and its author's later changes up to one carrying their signature:
    enough for anyone to check that the author signed `start`."""
    actor = every[start].actor
    children: dict[bytes, list[bytes]] = {}
    for h, c in every.items():
        if c.actor == actor:
            for d in c.deps:
                children.setdefault(d, []).append(h)
    path = [start]
    h = start
    while True:
        sig = valid.get((h, actor)) or stored(h, actor)
        if sig is not None:
            return {"changes": [every[x].data for x in path], "sig": [h, actor, sig]}
        nxt = children.get(h)
        if not nxt:
            return {"changes": [every[x].data for x in path], "sig": None}
        h = min(nxt)
        path.append(h)


def role_of(doc: Document | None, member: bytes) -> tuple[str | None, bool]:
    """Current role and ban state of a member in a community document."""
    if doc is None:
        return None, False
    heads = doc.get_heads()
    return _role_at(doc, heads, member)


def describe_fork(ref: DocRef, fork: Fork, name: str) -> str:
    """The one line a user reads about a fork (`name` is the author's display name)."""
    from p2p.identity import fingerprint

    who = f"{name!r} ({fingerprint(fork.actor)})" if name else fingerprint(fork.actor)
    return (
        f"fork: {who} signed two different versions of change #{fork.seq} in their "
        f"{ref.kind} (one identity used on two devices, or a hostile member); every peer "
        "keeps the same one, the other is set aside and kept as proof"
    )


def _held(db: Any, doc_id: bytes, *tables: str) -> bool:
    """Whether any of these tables (pending, held or set-aside changes) has a row for
    the document: then only the full path may judge it."""
    return any(
        db.execute(f"SELECT 1 FROM {t} WHERE doc = ? LIMIT 1", (doc_id,)).fetchone() for t in tables
    )


def _keep_sigs(
    db: Any, doc_id: bytes, valid: Mapping[tuple[bytes, bytes], bytes], hashes: set[bytes]
) -> None:
    """Store the valid signatures of the changes `hashes` (accepted or held)."""
    db.executemany(
        "INSERT OR IGNORE INTO sigs (doc, hash, signer, sig) VALUES (?, ?, ?, ?)",
        [(doc_id, h, s, g) for (h, s), g in valid.items() if h in hashes],
    )
