"""A second reader, written from docs/bundle-format.md alone (no `p2p` import):
it must accept the shipped valid bundle and find the same faults in the golden
ones. If the code and the document drift apart, this fails."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import blake3
import msgpack
import pytest
from automerge.core import Document
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

VECTORS = Path(__file__).resolve().parents[1] / "bundles" / "vectors"
# the vectors of each container version: version 1 at the top, the others in vN/
FOLDERS = {1: VECTORS, 2: VECTORS / "v2"}
MAGIC = b"P2PBNDL\n"
# §1: per version, the trailer digest's hash and the signed message's tag
DIGESTS = {
    1: lambda data: hashlib.sha256(data).digest(),
    2: lambda data: blake3.blake3(data).digest(),
}
TAGS = {1: b"p2p/bundle/v1\x00", 2: b"p2p/bundle/v2\x00"}


class Fault(Exception):
    pass


def read_container(data: bytes, versions: tuple[int, ...] = (1, 2)) -> tuple[dict, list[dict]]:
    """Section 1, step by step. `versions`: those this reader knows (`(1,)` is
    a reader as p2p was before version 2)."""
    if not data.startswith(MAGIC):
        raise Fault("NotABundle")
    pos = len(MAGIC)

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise Fault("BundleTruncated")
        pos += n
        return data[pos - n : pos]

    version, header_len = struct.unpack(">HI", take(6))
    if version not in versions:
        raise Fault("UnsupportedVersion")
    if header_len > 65536:
        raise Fault("BundleTooLarge")
    header = msgpack.unpackb(take(header_len), raw=False)
    records, seen = [], set()
    while True:
        (length,) = struct.unpack(">I", take(4))
        if length == 0:
            break
        if length > 64 * 1024 * 1024:
            raise Fault("BundleTooLarge")
        body = take(length)
        if body in seen:
            raise Fault("BundleCorrupt")
        seen.add(body)
        records.append(body)  # decoded only once the trailer has verified
    digest_end = pos
    count, digest, signature = struct.unpack(">Q32s64s", take(104))
    if pos != len(data):
        raise Fault("BundleCorrupt")
    if DIGESTS[version](data[:digest_end]) != digest or count != len(records):
        raise Fault("BundleCorrupt")
    try:
        Ed25519PublicKey.from_public_bytes(header["exporter"]).verify(
            signature, TAGS[version] + digest + struct.pack(">Q", count)
        )
    except InvalidSignature as exc:
        raise Fault("BadBundleSignature") from exc
    return header, [msgpack.unpackb(body, raw=False) for body in records]


def check_records(records: list[dict]) -> tuple[int, int]:
    """Section 2: ids derive as documented; every signature verifies over the
    documented message; every change has a same-author signature on itself or a
    descendant. Returns (documents, signatures)."""
    communities = {}
    docs = sigs = 0
    for r in records:
        if r["t"] == "community":
            cid = hashlib.sha256(b"p2p/community/v1\x00" + r["owner"] + r["salt"]).digest()[:16]
            assert cid == r["id"]
            communities[r["id"]] = r["owner"]
        elif r["t"] == "doc":
            assert r["community"] in communities
            kind = r["kind"].encode("ascii")
            doc_id = hashlib.sha256(
                b"p2p/doc/v1\x00" + r["community"] + kind + b"\x00" + r["owner"]
            ).digest()[:16]
            assert doc_id == r["doc"]
            assert r["enc"] == "save"  # the shipped vectors carry whole documents
            changes = Document.load(r["data"]).get_changes([])
            by_hash = {c.hash: c for c in changes}
            vouched: set[bytes] = set()
            for change_hash, signer, sig in r["sigs"]:
                Ed25519PublicKey.from_public_bytes(signer).verify(
                    sig, b"p2p/change/v1\x00" + r["doc"] + change_hash
                )
                sigs += 1
                stack = [change_hash]  # the signed change and its same-author ancestors
                while stack:
                    h = stack.pop()
                    c = by_hash.get(h)
                    if c is None or h in vouched or bytes(c.actor_id) != signer:
                        continue
                    vouched.add(h)
                    stack.extend(c.deps)
            if r["kind"] != "community":
                assert all(bytes(c.actor_id) == r["owner"] for c in changes)
            assert vouched == set(by_hash), "a change no signature vouches for"
            docs += 1
    return docs, sigs


@pytest.mark.parametrize("version", sorted(FOLDERS))
def test_second_reader_accepts_the_valid_vector(version: int) -> None:
    data = (FOLDERS[version] / "valid.p2p").read_bytes()
    assert struct.unpack(">H", data[8:10]) == (version,)
    header, records = read_container(data)
    assert len(header["exporter"]) == 32 and header["created"] > 1_600_000_000
    docs, sigs = check_records(records)
    assert docs > 0 and sigs >= docs
    assert {r["t"] for r in records} >= {"community", "inventory", "doc"}


@pytest.mark.parametrize("version", sorted(FOLDERS))
@pytest.mark.parametrize(
    "name",
    [
        "truncated.p2p",
        "truncated-trailer.p2p",
        "tampered.p2p",
        "wrong-signer.p2p",
        "empty.p2p",
        "garbage.p2p",
    ],
)
def test_second_reader_finds_the_documented_fault(name: str, version: int) -> None:
    folder = FOLDERS[version]
    expected = json.loads((folder / "manifest.json").read_text())[name]["error"]
    with pytest.raises(Fault) as caught:
        read_container((folder / name).read_bytes())
    if expected != "BundleError":  # "any bundle error": which one depends on the byte hit
        assert str(caught.value) == expected


def test_a_version_1_reader_refuses_version_2_and_reads_version_1() -> None:
    """A reader as p2p was before version 2 (§1 with `version` 1 only) says
    UnsupportedVersion for every version 2 vector, and reads the version 1 ones."""
    with pytest.raises(Fault, match="UnsupportedVersion"):
        read_container((FOLDERS[2] / "valid.p2p").read_bytes(), versions=(1,))
    read_container((FOLDERS[1] / "valid.p2p").read_bytes(), versions=(1,))


def test_the_digest_of_one_version_is_not_accepted_as_the_other() -> None:
    """A version 2 vector whose version field is set to 1: the digest is now
    checked as SHA-256 (and the byte changed anyway), so it is refused."""
    data = bytearray((FOLDERS[2] / "valid.p2p").read_bytes())
    data[8:10] = struct.pack(">H", 1)
    with pytest.raises(Fault, match="BundleCorrupt"):
        read_container(bytes(data))


def inventory_digest(inv: dict) -> bytes:
    """Section 2, "Whole and incremental inventories": the documented digest."""
    h = hashlib.sha256(b"p2p/inventory/v1\x00")
    for doc in sorted(inv):
        heads = sorted(set(inv[doc]))
        h.update(doc + struct.pack(">H", len(heads)) + b"".join(heads))
    return h.digest()


def test_second_reader_rebuilds_an_incremental_inventory() -> None:
    expect = json.loads((VECTORS / "inventory.json").read_text())
    _h, base = read_container((VECTORS / expect["base"]).read_bytes())
    _h, delta = read_container((VECTORS / expect["delta"]).read_bytes())
    check_records(base)
    (whole,) = [r for r in base if r["t"] == "inventory"]
    assert "base" not in whole
    assert inventory_digest(whole["docs"]) == whole["digest"]
    assert whole["digest"].hex() == expect["base_digest"]
    (listed,) = [r for r in delta if r["t"] == "inventory"]
    assert listed["base"] == whole["digest"]
    assert sorted(d.hex() for d in listed["docs"]) == expect["listed"]
    rebuilt = dict(whole["docs"])
    for doc, heads in listed["docs"].items():
        if heads:
            rebuilt[doc] = heads
        else:
            rebuilt.pop(doc, None)
    assert inventory_digest(rebuilt) == listed["digest"]
    assert listed["digest"].hex() == expect["digest"] and len(rebuilt) == expect["documents"]
    # every "have" hash is one the exporter held: here, the feed's heads in the base
    for doc, hashes in listed.get("have", {}).items():
        assert set(hashes) <= set(whole["docs"][doc])
    # the one change it carries builds on the base's heads and is signed by its author
    (doc_record,) = [r for r in delta if r["t"] == "doc"]
    assert doc_record["enc"] == "changes-zlib" and doc_record["doc"] in listed["docs"]
