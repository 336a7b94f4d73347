"""The record types a bundle carries (see docs/bundle-format.md, "Records").

`community` describes a community (self-certifying: its id is a hash of its
owner's key and salt), `inventory` says what the exporter holds so the
recipient can later send back only what is missing, and `doc` carries one
document's data with the signatures that vouch for it (built by
`p2p.exchange`).
"""

from __future__ import annotations

from dataclasses import dataclass

from p2p.community import Community, settings
from p2p.docref import community_id
from p2p.exchange import Inventory
from p2p.home import Home

MAX_INVENTORY_DOCS = 10_000  # per record; more are split over several records
MAX_HAVE = 16  # older hashes per document in an inventory's `have`
MAX_HEADS = 256


def community_record(home: Home, c: Community) -> dict:
    return {
        "t": "community",
        "id": c.id,
        "owner": c.owner,
        "salt": c.salt,
        "private": c.private,
        "name": settings(home, c).get("name", c.name),
    }


@dataclass(frozen=True)
class Described:
    id: bytes
    owner: bytes
    private: bool
    name: str


def parse_community(record: dict) -> Described:
    """A community record, checked; ValueError when malformed or altered."""
    try:
        cid, owner, salt = bytes(record["id"]), bytes(record["owner"]), bytes(record["salt"])
        private, name = bool(record["private"]), str(record.get("name", ""))[:200]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError("malformed community record") from exc
    if community_id(owner, salt) != cid:
        raise ValueError("community id does not match its owner")
    return Described(cid, owner, private, name)


def inventory_records(
    inv: Inventory,
    hints: Inventory | None = None,
    *,
    base: bytes | None = None,
    digest: bytes | None = None,
) -> list[dict]:
    """`inv` split into records; with `base`, `inv` lists only what differs from the
    exporter's inventory of that digest, and `digest` names the full one."""
    items = sorted(inv.items())
    hints = hints or {}
    out = []
    for i in range(0, max(len(items), 1), MAX_INVENTORY_DOCS):
        chunk = items[i : i + MAX_INVENTORY_DOCS]
        record: dict = {"t": "inventory", "docs": {k: v for k, v in chunk}}
        have = {k: hints[k][:MAX_HAVE] for k, _ in chunk if hints.get(k)}
        if have:
            record["have"] = have
        if base is not None:
            record["base"] = base
        if digest is not None:
            record["digest"] = digest
        out.append(record)
    return out


def parse_digests(record: dict) -> tuple[bytes | None, bytes | None]:
    """An inventory record's optional `base` and `digest` (32 bytes each)."""
    out = []
    for key in ("base", "digest"):
        value = record.get(key)
        if value is not None and not (isinstance(value, bytes) and len(value) == 32):
            raise ValueError(f"malformed inventory record ({key})")
        out.append(value)
    return out[0], out[1]


def parse_have(record: dict) -> Inventory:
    """The optional `have` hints of an inventory record (older hashes held)."""
    try:
        have = record.get("have", {})
        if not isinstance(have, dict) or len(have) > MAX_INVENTORY_DOCS:
            raise ValueError
        out: Inventory = {}
        for doc_id, hashes in have.items():
            if not isinstance(hashes, list) or len(hashes) > MAX_HAVE:
                raise ValueError
            if not all(isinstance(h, bytes) and len(h) == 32 for h in hashes):
                raise ValueError
            out[bytes(doc_id)] = list(hashes)
        return out
    except (TypeError, ValueError) as exc:
        raise ValueError("malformed inventory record") from exc


def parse_inventory(record: dict) -> Inventory:
    try:
        docs = record["docs"]
        if not isinstance(docs, dict) or len(docs) > MAX_INVENTORY_DOCS:
            raise ValueError
        inv: Inventory = {}
        for doc_id, heads in docs.items():
            if not isinstance(heads, list) or len(heads) > MAX_HEADS:
                raise ValueError
            inv[bytes(doc_id)] = [bytes(h) for h in heads]
        return inv
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError("malformed inventory record") from exc
