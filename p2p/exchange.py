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

from p2p import signing
from p2p.chunk import RawChange
from p2p.docref import DocRef
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
    doc = home.docs.load(ref.id)
    if doc is None:
        raise KeyError(ref.id)
    changes = {c.hash: as_raw(c) for c in doc.get_changes([])}
    order = signing.topo_order(changes)
    sigs = signing.choose(order, changes, home.docs.sig_lookup(ref.id))
    return _record(ref, "save", doc.save(), sigs)


def delta_record(home: Home, ref: DocRef, peer_heads: list[bytes]) -> dict | None:
    """What a peer with `peer_heads` lacks of this document, or None."""
    return lacking_record(home, ref, [peer_heads])


def lacking_record(home: Home, ref: DocRef, peers: list[list[bytes]]) -> dict | None:
    """What any of several peers (given by their heads) lacks, as one record."""
    doc = home.docs.load(ref.id)
    if doc is None:
        return None
    mine = set(doc.get_heads())
    peers = [h for h in peers if not set(h) >= mine]
    if not peers:
        return None
    if any(not h for h in peers):
        return full_record(home, ref)
    # get_changes() ignores unknown heads and then returns everything
    have = {c.hash for c in doc.get_changes([])}
    missing: dict[bytes, RawChange] = {}
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
    rows = home.store.db.execute("SELECT id, community, kind, owner FROM docs ORDER BY id")
    for doc_id, community, kind, owner in list(rows):
        if wanted is not None and community not in wanted:
            continue
        ref = DocRef(community, kind, owner)
        record = lacking_record(home, ref, [p.get(doc_id, []) for p in peers])
        if record is not None:
            yield record


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
