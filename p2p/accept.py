"""The acceptance path: the only way content from outside enters a store.

Every transport (bundle, LAN) hands its document records here. For each
document: drop what is already known, check every signature carried, require
each change to be vouched for by its own author (directly or through a signed
same-author descendant), require the author may write that document, and keep
changes whose dependencies have not arrived as pending. Then everything that
passed is applied in one SQLite transaction; what failed is reported change by
change and never touches the store.
"""

from __future__ import annotations

import time
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from automerge.core import ROOT, Document, ObjType

from p2p import chunk, signing
from p2p.chunk import RawChange
from p2p.docref import COMMUNITY, KINDS, OWNED_KINDS, DocRef
from p2p.documents import Documents, as_raw

MAX_PENDING_PER_DOC = 100_000


@dataclass
class Incoming:
    """One document's worth of changes from outside, with the signatures sent."""

    ref: DocRef
    claimed_id: bytes
    changes: list[RawChange]
    sigs: list[signing.Sig]
    loaded: Document | None = None  # set when the changes came as a saved document


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

    def merge(self, other: Report) -> None:
        self.applied += other.applied
        self.already += other.already
        self.pending += other.pending
        self.rejected += other.rejected
        self.docs_changed += other.docs_changed
        self.new_docs += other.new_docs


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


def from_record(record: dict) -> Incoming:
    """Decode a `doc` record (see docs/bundle-format.md); ValueError if malformed."""
    try:
        ref = DocRef(bytes(record["community"]), str(record["kind"]), bytes(record["owner"]))
        claimed = bytes(record["doc"])
        enc = record["enc"]
        data = bytes(record["data"])
        sigs = [(bytes(h), bytes(s), bytes(g)) for h, s, g in record.get("sigs", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError("malformed document record") from exc
    if enc == "save":
        if not data:
            raise ValueError("empty saved document")
        try:
            loaded = Document.load(data)
            changes = [as_raw(c) for c in loaded.get_changes([])]
        except Exception as exc:
            raise ValueError(f"saved document does not load ({exc})") from exc
        return Incoming(ref, claimed, changes, sigs, loaded)
    if enc == "changes-zlib":
        data = inflate(data)
        enc = "changes"
    if enc == "changes":
        try:
            changes = list(chunk.split(data))
        except chunk.ChunkError as exc:
            raise ValueError(f"bad change data ({exc})") from exc
        return Incoming(ref, claimed, changes, sigs)
    raise ValueError("unknown document encoding")


def _role_at(doc: Document, heads: list[bytes], member: bytes) -> tuple[str | None, bool]:
    """A member's role and banned flag as the document stood at `heads`."""
    if not heads:
        return None, False
    role = None
    roles = doc.get(ROOT, "roles", heads)
    if roles is not None:
        got = doc.get(roles[1], member.hex(), heads)
        if got is not None and not isinstance(got[0], ObjType):
            role = str(got[0][1])
    banned = False
    bans = doc.get(ROOT, "bans", heads)
    if bans is not None:
        banned = doc.get(bans[1], member.hex(), heads) is not None
    return role, banned


@dataclass
class Verdict:
    """What the rules say about a pool of changes for one document."""

    valid: dict[tuple[bytes, bytes], bytes]  # (hash, signer) -> signature, checked
    ready: list[bytes]  # acceptable now, in dependency order
    rejected: dict[bytes, str]
    waiting: list[bytes]  # dependencies missing: keep pending
    bad_sigs: list[bytes]


def evaluate(
    ref: DocRef,
    pool: dict[bytes, RawChange],
    sigs: Iterable[signing.Sig],
    known: set[bytes],
    existing: bytes,
    community_owner: bytes,
) -> Verdict:
    """Apply every acceptance rule to `pool`; touches no store.

    `known` are change hashes already present (with `existing` their bytes,
    needed to judge shared-document changes against the roles of the time).
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
        if any(d in rejected for d in c.deps):
            rejected[h] = "depends on a rejected change"
        elif not all(d in present for d in c.deps):
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

    if ref.kind == COMMUNITY and any(pool[h].actor != community_owner for h in ready):
        candidates = Document.load(existing + b"".join(pool[h].data for h in ready))
        kept: list[bytes] = []
        for h in ready:
            c = pool[h]
            if any(d in rejected for d in c.deps):
                rejected[h] = "depends on a rejected change"
                continue
            if c.actor != community_owner:
                role, banned = _role_at(candidates, list(c.deps), c.actor)
                if role != "moderator" or banned:
                    rejected[h] = "only the owner and moderators may change community settings"
                    continue
            kept.append(h)
        ready = kept
    return Verdict(valid, ready, rejected, waiting, bad)


class Acceptor:
    """Runs the acceptance path against one store."""

    def __init__(self, docs: Documents, communities: dict[bytes, bytes]) -> None:
        """`communities` maps each joined community id to its owner key."""
        self.docs = docs
        self.store = docs.store
        self.communities = communities

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
            with self.store.transaction() as db:
                for doc_id, items in groups.items():
                    report.merge(self._accept_doc(db, doc_id, items))
                    touched.append(doc_id)
        finally:
            for doc_id in touched:
                self.docs.forget(doc_id)
        return report

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

    def _accept_doc(self, db, doc_id: bytes, items: list[Incoming]) -> Report:  # noqa: ANN001
        ref = items[0].ref
        report = Report()
        existing_data = self.docs.data(doc_id)
        existing = Document.load(existing_data) if existing_data else None
        known = {c.hash for c in existing.get_changes([])} if existing else set()

        pool: dict[bytes, RawChange] = {}
        sigs: list[signing.Sig] = []
        for inc in items:
            for c in inc.changes:
                if c.hash in known:
                    report.already += 1
                else:
                    pool[c.hash] = c
            sigs += inc.sigs
        incoming_hashes = set(pool)
        for h, data in db.execute("SELECT hash, data FROM pending WHERE doc = ?", (doc_id,)):
            if h not in pool and h not in known:
                pool[h] = chunk.parse_one(data)[0]
        sigs += [
            tuple(r)
            for r in db.execute(
                "SELECT hash, signer, sig FROM pending_sigs WHERE doc = ?", (doc_id,)
            )
        ]
        if not pool:
            return report

        verdict = evaluate(
            ref,
            pool,
            sigs,
            known,
            existing_data or b"",
            self.communities[ref.community],
        )
        valid, ready, rejected, waiting = (
            verdict.valid,
            verdict.ready,
            verdict.rejected,
            verdict.waiting,
        )
        for h in verdict.bad_sigs:
            if h in incoming_hashes:
                report.rejected.append(Rejection(doc_id, h, "signature does not verify"))
        for h, reason in rejected.items():
            if h in incoming_hashes:
                report.rejected.append(Rejection(doc_id, h, reason))

        pending_count = len(waiting)
        if pending_count > MAX_PENDING_PER_DOC:
            for h in waiting[MAX_PENDING_PER_DOC:]:
                report.rejected.append(Rejection(doc_id, h, "too many changes waiting"))
            waiting = waiting[:MAX_PENDING_PER_DOC]

        if ready:
            fast = (
                existing is None
                and len(items) == 1
                and items[0].loaded is not None
                and set(ready) == {c.hash for c in items[0].changes}
            )
            if fast:
                merged = items[0].loaded
            else:
                merged = Document.load(
                    (existing_data or b"") + b"".join(pool[h].data for h in ready)
                )
            assert merged is not None
            self.docs.replace(db, ref, merged)
            accepted = set(ready)
            db.executemany(
                "INSERT OR IGNORE INTO sigs (doc, hash, signer, sig) VALUES (?, ?, ?, ?)",
                [(doc_id, h, s, g) for (h, s), g in valid.items() if h in accepted],
            )
            report.applied += len(ready)
            report.docs_changed.append(ref)
            if existing is None:
                report.new_docs.append(ref)

        done = [(doc_id, h) for h in list(ready) + list(rejected)]
        db.executemany("DELETE FROM pending WHERE doc = ? AND hash = ?", done)
        db.executemany("DELETE FROM pending_sigs WHERE doc = ? AND hash = ?", done)
        now = int(time.time())
        db.executemany(
            "INSERT OR IGNORE INTO pending (doc, hash, community, kind, owner, data, received)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(doc_id, h, ref.community, ref.kind, ref.owner, pool[h].data, now) for h in waiting],
        )
        waiting_set = set(waiting)
        db.executemany(
            "INSERT OR IGNORE INTO pending_sigs (doc, hash, signer, sig) VALUES (?, ?, ?, ?)",
            [(doc_id, h, s, g) for (h, s), g in valid.items() if h in waiting_set],
        )
        report.pending += len([h for h in waiting if h in incoming_hashes])
        return report


def role_of(doc: Document | None, member: bytes) -> tuple[str | None, bool]:
    """Current role and ban state of a member in a community document."""
    if doc is None:
        return None, False
    heads = doc.get_heads()
    return _role_at(doc, heads, member)
