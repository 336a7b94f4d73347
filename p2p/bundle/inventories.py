"""Incremental inventories: a bundle lists only what changed since a base.

A full inventory (`{doc id: heads}` of every document the exporter holds in
the bundle's communities) is named by its digest. A bundle's inventory may
instead be a *delta*: the entries that differ from an earlier inventory of
the same exporter (`base`), plus the digest of the full inventory it
describes. A reader that holds the base rebuilds the full inventory and checks
it against that digest; one that does not learns only the listed entries,
which is still true (a store never loses a change), merely less. Either way a
reader never believes the exporter holds more than it does, so what it later
sends back may be more than needed, never less. See docs/bundle-format.md.

Both sides keep the inventories they know by digest: the exporter its own (to
choose a base and to serve `export --since` without re-reading the bundle),
the reader each exporter's it could rebuild.
"""

from __future__ import annotations

import hashlib
import struct
import time
from pathlib import Path

import msgpack

from p2p.bundle.container import MAGIC
from p2p.bundle.names import file_digest, legacy_digest
from p2p.exchange import Inventory
from p2p.home import Home

TAG = b"p2p/inventory/v1\x00"
KEEP = 16  # inventories remembered per owner


def digest(inv: Inventory) -> bytes:
    """SHA-256 over TAG, then per document in byte order: id, head count u16, sorted heads."""
    h = hashlib.sha256(TAG)
    for doc in sorted(inv):
        heads = sorted(set(inv[doc]))
        h.update(doc + struct.pack(">H", len(heads)) + b"".join(heads))
    return h.digest()


def delta(full: Inventory, base: Inventory) -> Inventory:
    """Entries of `full` that differ from `base`; a document `base` has and `full`
    lacks is listed with no heads."""
    out = {d: h for d, h in full.items() if sorted(set(base.get(d, []))) != sorted(set(h))}
    out.update({d: [] for d in base if d not in full})
    return out


def apply(base: Inventory, changed: Inventory) -> Inventory:
    out = dict(base)
    for d, h in changed.items():
        if h:
            out[d] = list(h)
        else:
            out.pop(d, None)
    return out


def _pack(inv: Inventory) -> bytes:
    return msgpack.packb({d: sorted(set(h)) for d, h in inv.items()}, use_bin_type=True)


def _unpack(blob: bytes) -> Inventory:
    return {bytes(d): [bytes(x) for x in h] for d, h in msgpack.unpackb(blob).items()}


def scope_of(communities: list[bytes]) -> bytes:
    """Which communities an inventory covers (a base must cover the same)."""
    return hashlib.sha256(b"".join(sorted(communities))).digest()[:16]


def remember(
    home: Home, owner: bytes, scope: bytes, inv: Inventory, bundle: bytes | None = None
) -> bytes:
    """Keep `owner`'s inventory (and which bundle file carried it); its digest."""
    d = digest(inv)
    db = home.store.db
    with home.store.transaction():
        db.execute(
            "INSERT INTO inventories (owner, digest, scope, inventory, at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (owner, digest) DO NOTHING",
            (owner, d, scope, _pack(inv), time.time()),
        )
        db.execute(
            "DELETE FROM inventories WHERE owner = ? AND digest NOT IN (SELECT digest FROM"
            " inventories WHERE owner = ? ORDER BY at DESC LIMIT ?)",
            (owner, owner, KEEP),
        )
        if bundle is not None:
            db.execute(
                "INSERT OR REPLACE INTO bundle_inventories (sha256, owner, digest)"
                " VALUES (?, ?, ?)",
                (bundle, owner, d),
            )
    return d


def known(home: Home, owner: bytes, d: bytes) -> Inventory | None:
    row = home.store.db.execute(
        "SELECT inventory FROM inventories WHERE owner = ? AND digest = ?", (owner, d)
    ).fetchone()
    return _unpack(row[0]) if row else None


def latest(home: Home, owner: bytes, scope: bytes) -> tuple[bytes, Inventory] | None:
    """`owner`'s most recent inventory of this scope that this home keeps."""
    row = home.store.db.execute(
        "SELECT digest, inventory FROM inventories WHERE owner = ? AND scope = ?"
        " ORDER BY at DESC LIMIT 1",
        (owner, scope),
    ).fetchone()
    return (row[0], _unpack(row[1])) if row else None


def of_bundle(home: Home, sha256: bytes) -> tuple[bytes, bytes, Inventory] | None:
    """(owner, digest, inventory) carried by the bundle file with this name digest, if kept."""
    row = home.store.db.execute(
        "SELECT b.owner, b.digest, i.inventory FROM bundle_inventories b JOIN inventories i"
        " ON i.owner = b.owner AND i.digest = b.digest WHERE b.sha256 = ?",
        (sha256,),
    ).fetchone()
    return (row[0], row[1], _unpack(row[2])) if row else None


def kept_inventory(home: Home, paths: list[Path]) -> tuple[bytes, bytes, Inventory] | None:
    """(owner, digest, inventory) of a bundle this home wrote or imported, by the
    file's name; a file that may be a version 1 container is also looked up by
    the name p2p gave files before version 2 (its SHA-256)."""
    kept = of_bundle(home, file_digest(paths))
    if kept is None and _maybe_v1(paths):
        kept = of_bundle(home, legacy_digest(paths))
    return kept


def _maybe_v1(paths: list[Path]) -> bool:
    """Whether the bundle may be a version 1 container (a plain single file says
    so in its first bytes; an encrypted one or parts only once opened)."""
    if len(paths) != 1:
        return True
    with paths[0].open("rb") as fh:
        head = fh.read(len(MAGIC) + 2)
    return not head.startswith(MAGIC) or head[len(MAGIC) :] == b"\x00\x01"
