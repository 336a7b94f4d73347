"""The incremental-inventory vectors, byte for byte reproducible (fixed seeds,
fixed times, fixed post ids; Automerge and Ed25519 are deterministic).

    python bundles/inventory_vectors.py          # rewrites them in vectors/
    python bundles/inventory_vectors.py --check  # exits 1 if they differ

Writes vectors/inventory-base.p2p (a bundle with a whole inventory, digest
named in it) and vectors/inventory-delta.p2p (one more post; its inventory
lists only that feed, against the first one's digest), and
vectors/inventory.json saying what a correct reader finds
(docs/bundle-format.md, "Whole and incremental inventories").
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from automerge.core import ROOT, Document, ObjType, ScalarType  # noqa: E402

from p2p import signing  # noqa: E402
from p2p.bundle import inventories  # noqa: E402
from p2p.bundle.container import write_bundle  # noqa: E402
from p2p.bundle.records import inventory_records  # noqa: E402
from p2p.docref import FEED, community_id, doc_id  # noqa: E402
from p2p.documents import as_raw  # noqa: E402
from p2p.identity import Identity  # noqa: E402

# a published test key (it never protects anything): age needs one to build an Identity
AGE = "AGE-SECRET-KEY-17FXXLYNWKLMLZY4RVGV9RKE02Z9T3ZM4JWDLVY5SQLHYY2LM2JVQ352KQ7"
CREATED = 1_767_225_600  # 2026-01-01 00:00 UTC


def person(name: str) -> Identity:
    return Identity(hashlib.sha256(b"p2p vectors " + name.encode()).digest(), AGE)


def _post(doc: Document, key: str, text: str, ts: int) -> None:
    got = doc.get(ROOT, "posts")
    with doc.transaction() as tx:
        posts = got[1] if got else tx.put_object(ROOT, "posts", ObjType.Map)
        p = tx.put_object(posts, key, ObjType.Map)
        tx.put(p, "text", ScalarType.Str, text)
        tx.put(p, "ts", ScalarType.Int, ts)


def build() -> dict[str, bytes]:
    owner, reader = person("owner"), person("second author")
    salt = hashlib.sha256(b"p2p vectors salt").digest()[:16]
    cid = community_id(owner.public_key, salt)
    community = {
        "t": "community",
        "id": cid,
        "owner": owner.public_key,
        "salt": salt,
        "private": False,
        "name": "Vector village",
    }
    docs: dict[bytes, tuple[Identity, Document]] = {}
    for who, text in ((owner, "The well is fixed."), (reader, "Thank you!")):
        doc = Document(actor_id=who.public_key)
        _post(doc, "0000000000000001", text, 1_767_225_600_000)
        docs[doc_id(cid, FEED, who.public_key)] = (who, doc)

    def record(d: bytes, who: Identity, enc: str, data: bytes, heads: list[bytes]) -> dict:
        return {
            "t": "doc",
            "community": cid,
            "kind": FEED,
            "owner": who.public_key,
            "doc": d,
            "enc": enc,
            "data": data,
            "sigs": [list(signing.sign(who, d, h)) for h in heads],
        }

    full = {d: sorted(doc.get_heads()) for d, (_w, doc) in docs.items()}
    base_digest = inventories.digest(full)
    records = [community, *inventory_records(full, digest=base_digest)]
    for d, (who, doc) in sorted(docs.items()):
        records.append(record(d, who, "save", doc.save(), doc.get_heads()))
    out = {"inventory-base.p2p": _bundle(owner, records)}

    # one more post by the owner: the delta lists one document
    feed = doc_id(cid, FEED, owner.public_key)
    doc = docs[feed][1]
    before = sorted(doc.get_heads())
    _post(doc, "0000000000000002", "Water tomorrow from seven.", 1_767_229_200_000)
    change = as_raw(doc.get_last_local_change())
    now = {**full, feed: sorted(doc.get_heads())}
    digest = inventories.digest(now)
    listed = inventories.delta(now, full)
    records = [
        community,
        *inventory_records(listed, {feed: before}, base=base_digest, digest=digest),
        record(feed, owner, "changes-zlib", zlib.compress(change.data, 9), [change.hash]),
    ]
    out["inventory-delta.p2p"] = _bundle(owner, records)
    out["inventory.json"] = (
        json.dumps(
            {
                "base": "inventory-base.p2p",
                "delta": "inventory-delta.p2p",
                "base_digest": base_digest.hex(),
                "digest": digest.hex(),
                "listed": [d.hex() for d in sorted(listed)],
                "documents": len(now),
            },
            indent=2,
        )
        + "\n"
    ).encode()
    return out


def _bundle(exporter: Identity, records: list[dict]) -> bytes:
    buf = io.BytesIO()
    write_bundle(buf, exporter, records, CREATED, version=1)  # the v1 vectors: kept as they are
    return buf.getvalue()


def main() -> None:
    vectors = HERE / "vectors"
    made = build()
    if "--check" in sys.argv:
        stale = [n for n, data in made.items() if (vectors / n).read_bytes() != data]
        print("differ: " + ", ".join(stale) if stale else "all identical")
        sys.exit(1 if stale else 0)
    for name, data in made.items():
        (vectors / name).write_bytes(data)
    print(f"wrote {', '.join(made)} in {vectors}")


if __name__ == "__main__":
    main()
