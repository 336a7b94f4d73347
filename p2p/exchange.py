"""The exchange engine shared by bundles and LAN sessions.

An inventory is `{doc_id: heads}`. Given a peer's inventory, `records_for`
yields what the peer lacks, one signed `doc` record per document: the whole
saved document when the peer has none of it (about five times smaller than
its raw changes), else only the missing changes, zlib-compressed (about three
times smaller: the author key and counters repeat). Each record carries the
fewest stored signatures that vouch for every change in it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

import msgpack

from p2p import chunk, signing
from p2p.chunk import RawChange
from p2p.docref import OWNED_KINDS, DocRef
from p2p.documents import as_raw
from p2p.home import Home

Inventory = dict[bytes, list[bytes]]


def inventory(home: Home, communities: Iterable[bytes] | None = None) -> Inventory:
    wanted = set(communities) if communities is not None else None
    inv: Inventory = {}
    for doc_id, community, heads in home.store.db.execute(
        "SELECT id, community, heads FROM docs ORDER BY id"
    ):
        if wanted is None or community in wanted:
            inv[doc_id] = list(msgpack.unpackb(heads)) if heads else []
    return inv


MAX_HINTS = 8


def have_hints(home: Home, communities: Iterable[bytes]) -> Inventory:
    """Per document, a few older change hashes this store holds: 1, 2, 4, ... 128
    changes back from its newest. A peer that is behind on a document does not
    know our newest heads but likely holds one of these, so what it sends us
    back is only what follows that one, not the whole document."""
    out: Inventory = {}
    for community in communities:
        for doc_id in home.docs.ids(community):
            doc = home.docs.load(doc_id)
            if doc is None:
                continue
            hashes = [c.hash for c in doc.get_changes([])]
            picks = [hashes[-1 - (1 << i)] for i in range(MAX_HINTS) if (1 << i) < len(hashes)]
            if picks:
                out[doc_id] = picks
    return out


def _record(ref: DocRef, enc: str, data: bytes, sigs: list[signing.Sig]) -> dict:
    return {
        "t": "doc",
        "community": ref.community,
        "kind": ref.kind,
        "owner": ref.owner,
        "doc": ref.id,
        "enc": enc,
        "data": data,
        "sigs": [list(s) for s in sigs],
    }


def full_record(home: Home, ref: DocRef) -> dict:
    """The whole document: its stored bytes as they are (a snapshot and the log of
    later changes, which Automerge loads as one), never loaded and saved again."""
    data = home.docs.data(ref.id)
    if data is None:
        raise KeyError(ref.id)
    sigs = _head_sigs(home, ref)
    if sigs is None:  # several authors: the fewest signatures need the change graph
        doc = home.docs.load(ref.id)
        if doc is None:
            raise KeyError(ref.id)
        changes = {c.hash: as_raw(c) for c in doc.get_changes([])}
        order = signing.topo_order(changes)
        sigs = signing.choose(order, changes, home.docs.sig_lookup(ref.id))
    return _record(ref, "save", data, sigs)


def _head_sigs(home: Home, ref: DocRef) -> list[signing.Sig] | None:
    """For a document only its owner writes, the owner's signatures on its heads
    vouch for every change (each is an ancestor of a head, by the same author)."""
    if ref.kind not in OWNED_KINDS:
        return None
    lookup = home.docs.sig_lookup(ref.id)
    sigs = []
    for h in home.docs.heads(ref.id):
        sig = lookup(h, ref.owner)
        if sig is None:
            return None
        sigs.append((h, ref.owner, sig))
    return sigs or None


def _log_delta(
    home: Home, doc_id: bytes, peers: list[list[bytes]]
) -> dict[bytes, RawChange] | None:
    """What peers lack, from the store's change log alone (no Automerge load), or
    None when the log cannot tell. Every logged change (a local write, or an accepted
    change appended the same way: `Documents.extend`) is built on all heads of its
    time, so the log is a chain starting at the snapshot's heads;
    a peer holding a link (or all the snapshot's heads) lacks only what follows."""
    rows = home.store.db.execute(
        "SELECT data FROM changes WHERE doc = ? ORDER BY n", (doc_id,)
    ).fetchall()
    if not rows:
        return None
    try:
        log = [chunk.parse_one(r[0])[0] for r in rows]
    except (chunk.ChunkError, IndexError):
        return None
    snapshot_heads = set(log[0].deps)
    for prev, c in zip(log, log[1:], strict=False):
        if c.deps != (prev.hash,):
            return None
    index = {c.hash: i for i, c in enumerate(log)}
    missing: dict[bytes, RawChange] = {}
    for heads in peers:
        at = max((index[h] for h in heads if h in index), default=None)
        if at is None:
            if not snapshot_heads or not snapshot_heads <= set(heads):
                return None
            at = -1
        for c in log[at + 1 :]:
            missing.setdefault(c.hash, c)
    return missing


def delta_record(home: Home, ref: DocRef, peer_heads: list[bytes]) -> dict | None:
    """What a peer with `peer_heads` lacks of this document, or None."""
    return lacking_record(home, ref, [peer_heads])


def lacking_record(home: Home, ref: DocRef, peers: list[list[bytes]]) -> dict | None:
    """What any of several peers (given by their heads) lacks, as one record."""
    mine = set(home.docs.heads(ref.id))
    if not mine and home.docs.data(ref.id) is None:
        return None
    peers = [h for h in peers if not set(h) >= mine]
    if not peers:
        return None
    if any(not h for h in peers):
        return full_record(home, ref)
    missing = _log_delta(home, ref.id, peers)
    if missing is None:
        doc = home.docs.load(ref.id)
        if doc is None:
            return None
        # get_changes() ignores unknown heads and then returns everything
        have = {c.hash for c in doc.get_changes([])}
        missing = {}
        for heads in peers:
            known = [h for h in heads if h in have]
            if not known:
                return full_record(home, ref)
            for c in doc.get_changes(known):
                missing.setdefault(c.hash, as_raw(c))
    if not missing:
        return None
    order = signing.topo_order(missing)
    sigs = signing.choose(order, missing, home.docs.sig_lookup(ref.id))
    data = b"".join(missing[h].data for h in order)
    packed = zlib.compress(data, 6)
    if len(packed) < len(data):  # Automerge leaves small changes uncompressed
        return _record(ref, "changes-zlib", packed, sigs)
    return _record(ref, "changes", data, sigs)


def records_for(
    home: Home,
    peer: Inventory | list[Inventory] | None,
    communities: Iterable[bytes] | None = None,
) -> Iterator[dict]:
    """Doc records for everything in `communities` that `peer` (or any of several) lacks."""
    peers = peer if isinstance(peer, list) else [peer or {}]
    if not peers:
        peers = [{}]
    wanted = set(communities) if communities is not None else None
    rows = home.store.db.execute(
        "SELECT id, community, kind, owner, heads FROM docs ORDER BY id"
    ).fetchall()
    for doc_id, community, kind, owner, heads in rows:
        if wanted is not None and community not in wanted:
            continue
        mine = set(msgpack.unpackb(heads)) if heads else set()
        theirs = [p.get(doc_id, []) for p in peers]
        if mine and all(set(h) >= mine for h in theirs):
            continue  # decided from the stored heads, without loading anything
        record = lacking_record(home, DocRef(community, kind, owner), theirs)
        if record is not None:
            yield record


def stored_size(
    home: Home, peer: Inventory | list[Inventory] | None, communities: Iterable[bytes]
) -> int:
    """About how many bytes `records_for` will send: the stored size of every
    document some peer lacks part of (a delta sends less), from SQL alone."""
    peers = peer if isinstance(peer, list) else [peer or {}]
    total = 0
    for c in communities:
        rows = home.store.db.execute(
            "SELECT d.id, d.heads, length(d.snapshot) + coalesce((SELECT sum(length(x.data))"
            " FROM changes x WHERE x.doc = d.id), 0) FROM docs d WHERE d.community = ?",
            (c,),
        )
        for doc_id, heads, size in rows:
            mine = set(msgpack.unpackb(heads)) if heads else set()
            if not mine or not all(set(p.get(doc_id, [])) >= mine for p in peers or [{}]):
                total += size
    return total


def held_heads(home: Home, doc_id: bytes, heads: list[bytes]) -> list[bytes]:
    """Those of `heads` (another peer's) whose changes this store holds."""
    doc = home.docs.load(doc_id)
    if doc is None:
        return []
    if set(heads) <= set(doc.get_heads()):
        return list(heads)
    have = {c.hash for c in doc.get_changes([])}
    return [h for h in heads if h in have]


def wants(
    home: Home, mine: Inventory, theirs: Inventory, remembered: Inventory | None = None
) -> Inventory:
    """The documents of `theirs` this store lacks something of, each with hashes
    of theirs it holds: their current heads it has, and the heads they had when
    last met (`remembered`) that it has. The peer sends only changes after
    those, so even when both sides moved on since, little crosses twice."""
    remembered = remembered or {}
    out: Inventory = {}
    for doc_id, heads in theirs.items():
        if not heads or set(heads) <= set(mine.get(doc_id, [])):
            continue
        if doc_id not in mine:
            out[doc_id] = []
            continue
        held = held_heads(home, doc_id, list(dict.fromkeys(heads + remembered.get(doc_id, []))))
        if not set(heads) <= set(held):
            out[doc_id] = held[:256]  # the protocol's bound per document
    return out


def records_wanted(home: Home, theirs: Inventory, wanted: Inventory) -> Iterator[dict]:
    """Doc records for what a peer asked for: per document, the changes after
    its own heads and after those of ours it says it holds."""
    for doc_id in sorted(wanted):
        row = home.store.db.execute(
            "SELECT community, kind, owner FROM docs WHERE id = ?", (doc_id,)
        ).fetchone()
        if row is None:
            continue
        ref = DocRef(row[0], row[1], row[2])
        record = lacking_record(home, ref, [theirs.get(doc_id, []) + wanted[doc_id]])
        if record is not None:
            yield record


def merge(a: Inventory, b: Inventory) -> Inventory:
    """What someone holding both `a` and `b` holds: the union of heads per document."""
    return {doc: sorted(set(a.get(doc, [])) | set(b.get(doc, []))) for doc in a.keys() | b.keys()}


def known_by(home: Home, peer: bytes) -> Inventory:
    """What a peer was known to hold, from its last bundle or sync."""
    return {
        doc: list(msgpack.unpackb(heads))
        for doc, heads in home.store.db.execute(
            "SELECT doc, heads FROM peer_heads WHERE peer = ?", (peer,)
        )
    }
