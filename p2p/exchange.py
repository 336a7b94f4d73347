"""The exchange engine shared by bundles and LAN sessions.

An inventory is `{doc_id: heads}`. Given a peer's inventory, `records_for`
yields what the peer lacks, one signed `doc` record per document: the whole
saved document when the peer has none of it (about five times smaller than
its raw changes), else only the missing changes. Each record carries the
fewest stored signatures that vouch for every change in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgpack

from p2p import signing
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
    doc = home.docs.load(ref.id)
    if doc is None:
        return None
    mine = set(doc.get_heads())
    if peer_heads and set(peer_heads) >= mine:
        return None
    all_changes = None
    known_heads: list[bytes] = []
    if peer_heads:
        # get_changes() ignores unknown heads and then returns everything
        all_changes = {c.hash for c in doc.get_changes([])}
        known_heads = [h for h in peer_heads if h in all_changes]
    if not known_heads:
        return full_record(home, ref)
    missing = {c.hash: as_raw(c) for c in doc.get_changes(known_heads)}
    if not missing:
        return None
    order = signing.topo_order(missing)
    sigs = signing.choose(order, missing, home.docs.sig_lookup(ref.id))
    data = b"".join(missing[h].data for h in order)
    return _record(ref, "changes", data, sigs)


def records_for(
    home: Home, peer: Inventory | None, communities: Iterable[bytes] | None = None
) -> Iterator[dict]:
    """Doc records for everything in `communities` that `peer` lacks."""
    peer = peer or {}
    wanted = set(communities) if communities is not None else None
    rows = home.store.db.execute("SELECT id, community, kind, owner FROM docs ORDER BY id")
    for doc_id, community, kind, owner in list(rows):
        if wanted is not None and community not in wanted:
            continue
        record = delta_record(home, DocRef(community, kind, owner), peer.get(doc_id, []))
        if record is not None:
            yield record
