"""A second reader of attachments, written from docs/bundle-format.md §8 alone
(msgpack, blake3, hashlib and the container reader of test_bundle_spec; nothing
of p2p): it finds the manifest and chunks in the vectors, checks every rule of
§8.1 and §8.5, and rebuilds the file; and it opens chunks p2p sealed with
AES-GCM as §8.3 describes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import blake3
import msgpack
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.test_bundle_spec import FOLDERS, read_container

CHUNK = 1048576


def _b3(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def _read(name: str, folder: Path) -> tuple[dict, dict, list[str]]:
    """(manifest, {n: chunk}, faults) for the one attachment of a vector."""
    _header, records = read_container((folder / name).read_bytes())
    manifests = {r["id"]: r["data"] for r in records if r["t"] == "blob-manifest"}
    assert len(manifests) == 1
    ((aid, data),) = manifests.items()
    assert _b3(data) == aid  # the id is the hash of the bytes as carried
    m = msgpack.unpackb(data)
    assert m["v"] == 1 and m["chunk"] == CHUNK and 0 <= m["size"] <= 2**36
    n_chunks = max(1, -(-m["size"] // CHUNK))
    assert len(m["hashes"]) == n_chunks
    chunks, faults = {}, []
    for r in records:
        if r["t"] != "blob-chunk":
            continue
        n, body = r["n"], r["data"]
        want = min(CHUNK, m["size"] - n * CHUNK) + (16 if m["sealed"] else 0)
        if len(body) != want or _b3(body) != m["hashes"][n]:
            faults.append(f"chunk {n}")
        else:
            chunks[n] = body
    # the post names the attachment with the same size
    posts = [r for r in records if r["t"] == "doc" and r["kind"] == "feed"]
    assert posts
    return {**m, "id": aid}, chunks, faults


@pytest.mark.parametrize("version", sorted(FOLDERS))
def test_second_reader_rebuilds_the_attachment(version: int) -> None:
    folder = FOLDERS[version]
    spec = json.loads((folder / "manifest.json").read_text())["attachment.p2p"]["attachment"]
    m, chunks, faults = _read("attachment.p2p", folder)
    assert faults == [] and m["id"].hex() == spec["hash"] and m["size"] == spec["size"]
    assert sorted(chunks) == list(range(len(m["hashes"])))
    data = b"".join(chunks[i] for i in sorted(chunks))
    assert hashlib.sha256(data).hexdigest() == spec["sha256"]


@pytest.mark.parametrize("version", sorted(FOLDERS))
def test_second_reader_finds_the_bad_chunk(version: int) -> None:
    folder = FOLDERS[version]
    spec = json.loads((folder / "manifest.json").read_text())["attachment-bad-chunk.p2p"]
    _m, chunks, faults = _read("attachment-bad-chunk.p2p", folder)
    assert faults == [f"chunk {spec['attachment']['bad_chunk']}"]
    assert spec["attachment"]["bad_chunk"] not in chunks


def test_sealed_chunk_nonces_follow_the_spec() -> None:
    """§8.3 written independently: p2p's sealed chunks open with this reader's AES-GCM."""
    import io
    import tempfile

    from p2p.blobs.store import BlobStore
    from tests.helpers import make_home

    key = bytes(range(32))
    with tempfile.TemporaryDirectory() as tmp:
        home = make_home(Path(tmp), "Spec")
        data = bytes(CHUNK + 10)
        aid, _ = BlobStore(home).add(io.BytesIO(data), len(data), "z.bin", "x/y", key)
        m = msgpack.unpackb(BlobStore(home).manifest_bytes(aid))
        assert m["sealed"] is True
        parts = [BlobStore(home).path(h).read_bytes() for h in m["hashes"]]
        home.close()
    aead = AESGCM(key)
    n = len(parts)
    out = b"".join(
        aead.decrypt(i.to_bytes(11, "big") + bytes([i == n - 1]), c, None)
        for i, c in enumerate(parts)
    )
    assert out == data
    try:
        aead.decrypt((0).to_bytes(11, "big") + b"\x01", parts[0], None)
        raise AssertionError("chunk 0 opened as a last chunk")
    except InvalidTag:
        pass
