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


def inventory_records(inv: Inventory) -> list[dict]:
    items = sorted(inv.items())
    out = []
    for i in range(0, max(len(items), 1), MAX_INVENTORY_DOCS):
        chunk = items[i : i + MAX_INVENTORY_DOCS]
        out.append({"t": "inventory", "docs": {k: v for k, v in chunk}})
    return out


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
