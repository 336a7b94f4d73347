"""Attachments in the store: chunking, sealing, verification, presence, forgetting."""

from __future__ import annotations

import io
import os
from pathlib import Path

import msgpack
import pytest

from p2p import community as cm
from p2p import content
from p2p.blobs import attach, entries, media, seal
from p2p.blobs import manifest as mf
from p2p.blobs.manifest import CHUNK, Manifest
from p2p.blobs.store import BlobStore, ReadAhead
from p2p.errors import AttachmentIncomplete, AttachmentRefused, BadAttachment
from tests.helpers import make_home


@pytest.fixture
def home(tmp_path: Path):
    h = make_home(tmp_path / "a", "Ana")
    yield h
    h.close()


def _add(store: BlobStore, data: bytes, name: str = "f.bin", key: bytes | None = None):
    return store.add(io.BytesIO(data), len(data), name, "application/octet-stream", key)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 7])
@pytest.mark.parametrize("sealed", [False, True])
def test_round_trip(home, size: int, sealed: bool) -> None:
    store = BlobStore(home)
    data = os.urandom(size)
    key = seal.new_key() if sealed else None
    aid, m = _add(store, data, key=key)
    assert aid == mf.digest(m.pack()) and len(m.hashes) == mf.chunk_count(size)
    assert store.presence(aid).state == "whole"
    out = io.BytesIO()
    store.save(aid, out, key)
    assert out.getvalue() == data
    if sealed and size >= 16:  # a shorter plaintext may appear in random bytes by chance
        # the chunks on disk are ciphertext, checkable without the key
        first = store.path(m.hashes[0]).read_bytes()
        assert data[:64] not in first and mf.digest(first) == m.hashes[0]


def test_files_are_private_and_identical_files_stored_once(home) -> None:
    store = BlobStore(home)
    data = os.urandom(CHUNK + 10)
    a1, _ = _add(store, data, "one.bin")
    a2, _ = _add(store, data, "two.bin")
    assert a1 != a2  # the name is part of the manifest
    (n,) = home.store.db.execute("SELECT COUNT(*) FROM blob_chunks").fetchone()
    assert n == 2
    files = [p for p in store.root.rglob("[0-9a-f]*") if p.is_file()]
    assert len(files) == 2 and all(p.stat().st_mode & 0o777 == 0o600 for p in files)
    assert all(p.stat().st_mode & 0o777 == 0o700 for p in store.root.rglob("*") if p.is_dir())


def _other_home_with_manifest(tmp_path: Path, m: Manifest):
    h = make_home(tmp_path / "b", "Bo")
    store = BlobStore(h)
    aid, _ = store.put_manifest(m.pack())
    return h, store, aid


def test_chunk_with_wrong_bytes_is_refused(home, tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK)
    _aid, m = _add(BlobStore(home), data)
    h, store, aid = _other_home_with_manifest(tmp_path, m)
    bad = bytearray(data[:CHUNK])
    bad[5] ^= 1
    with pytest.raises(BadAttachment, match="does not match its hash"):
        store.accept_chunk(aid, 0, bytes(bad))
    with pytest.raises(BadAttachment, match="bytes where its manifest"):
        store.accept_chunk(aid, 1, data[CHUNK:] + b"x")
    with pytest.raises(BadAttachment, match="outside"):
        store.accept_chunk(aid, 2, data[:CHUNK])
    assert store.presence(aid).state == "absent"
    assert store.accept_chunk(aid, 0, data[:CHUNK])
    assert not store.accept_chunk(aid, 0, data[:CHUNK])  # already here
    h.close()


def test_missing_last_chunk_is_partial_and_cannot_be_saved(home, tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK + 5)
    _aid, m = _add(BlobStore(home), data)
    h, store, aid = _other_home_with_manifest(tmp_path, m)
    for i in range(3):
        store.accept_chunk(aid, i, data[i * CHUNK : (i + 1) * CHUNK])
    p = store.presence(aid)
    assert (p.state, p.percent) == ("partial", 75)
    assert store.bitmap(aid) == bytes([0b11100000])
    with pytest.raises(AttachmentIncomplete, match="75%"):
        store.save(aid, io.BytesIO())
    store.accept_chunk(aid, 3, data[3 * CHUNK :])
    out = io.BytesIO()
    store.save(aid, out)
    assert out.getvalue() == data
    h.close()


def test_damaged_chunk_on_disk_is_not_saved(home) -> None:
    store = BlobStore(home)
    aid, m = _add(store, os.urandom(CHUNK + 1))
    path = store.path(m.hashes[1])
    path.write_bytes(b"rot")
    with pytest.raises(AttachmentIncomplete, match="damaged"):
        store.save(aid, io.BytesIO())
    assert store.presence(aid).state == "partial"


def _manifest(**change) -> bytes:
    base = {
        "v": 1,
        "size": 10,
        "name": "a.txt",
        "mime": "text/plain",
        "chunk": CHUNK,
        "sealed": False,
        "hashes": [b"\x00" * 32],
    }
    base.update(change)
    return msgpack.packb(base, use_bin_type=True)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"size": 3 * CHUNK}, "disagrees with its"),  # size says 3 chunks, 1 hash
        ({"size": 2**62}, "claims"),  # absurd size
        ({"size": -1}, "claims"),
        ({"size": "10"}, "claims"),
        ({"chunk": 4096}, "chunk size"),
        ({"name": "../../etc/passwd"}, "file name"),
        ({"hashes": [b"short"]}, "chunk hash"),
        ({"v": 2}, "version"),
    ],
)
def test_bad_manifests_are_refused(home, change: dict, message: str) -> None:
    store = BlobStore(home)
    before = home.store.db.execute("SELECT COUNT(*) FROM blob_manifests").fetchone()
    with pytest.raises(BadAttachment, match=message):
        store.put_manifest(_manifest(**change))
    assert home.store.db.execute("SELECT COUNT(*) FROM blob_manifests").fetchone() == before


def test_garbage_manifest_is_refused(home) -> None:
    for junk in (b"", b"\xc1", os.urandom(200), msgpack.packb([1, 2])):
        with pytest.raises(BadAttachment):
            mf.parse(junk)


def test_sealed_chunks_cannot_be_moved_or_cut(home) -> None:
    key = seal.new_key()
    s = seal.Sealer(key)
    c0, c1 = s.seal(0, False, b"a" * 10), s.seal(1, True, b"b" * 10)
    with pytest.raises(BadAttachment):
        s.open(1, True, c0)  # reordered
    with pytest.raises(BadAttachment):
        s.open(0, True, c0)  # the stream cut after chunk 0
    with pytest.raises(BadAttachment):
        seal.Sealer(seal.new_key()).open(1, True, c1)  # another key
    assert s.open(1, True, c1) == b"b" * 10


def test_unreferenced_attachments_are_kept_within_a_budget(home) -> None:
    store = BlobStore(home)
    ids = [_add(store, os.urandom(CHUNK), f"{i}.bin")[0] for i in range(4)]
    home.store.db.execute("UPDATE blob_manifests SET received = rowid")
    removed = store.collect(referenced={ids[0]}, budget=CHUNK + 1)
    assert removed == 2
    kept = {a for (a,) in home.store.db.execute("SELECT id FROM blob_manifests")}
    assert kept == {ids[0], ids[3]}  # the referenced one, and the newest within budget
    assert sum(1 for p in store.root.rglob("[0-9a-f]*") if p.is_file()) == 2


def test_images_lose_metadata_unless_asked(home, tmp_path: Path) -> None:
    from PIL import Image

    src = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    exif[0x8825] = {1: "N", 2: (52.0, 1.0, 2.0)}
    Image.new("RGB", (640, 480), (10, 200, 10)).save(src, exif=exif)
    assert b"SecretCam" in src.read_bytes()
    c = cm.create(home, "Town")
    clean, kept = (
        attach.add_files(home, [src], private=False, keep_metadata=keep)[0]
        for keep in (False, True)
    )
    for e, has_meta in ((clean, False), (kept, True)):
        out = io.BytesIO()
        BlobStore(home).save(e.id, out)
        assert (b"SecretCam" in out.getvalue()) is has_meta
        assert e.thumb is not None and len(e.thumb) <= media.THUMB_MAX
        assert Image.open(io.BytesIO(out.getvalue())).size == (640, 480)
    assert kept.size == src.stat().st_size
    content.post(home, c, "photos", attachments=[clean.as_doc(), kept.as_doc()])


def test_community_limit_refuses_before_posting(home, tmp_path: Path) -> None:
    f = tmp_path / "big.bin"
    f.write_bytes(os.urandom(5000))
    lim = attach.Limits(largest=4000)
    with pytest.raises(AttachmentRefused, match="over this community's"):
        attach.add_files(home, [f], private=False, lim=lim)
    lim = attach.Limits(member_total=9000)
    with pytest.raises(AttachmentRefused, match="per member"):
        attach.add_files(home, [f], private=False, lim=lim, already=5000)


def test_entries_survive_any_signed_value() -> None:
    good = {"id": b"\x01" * 32, "name": "a/b.txt", "size": 3, "mime": "text/plain"}
    values = [
        None,
        5,
        "x",
        [1, "a", None],
        [{**good, "size": -1}],
        [{**good, "size": 2**70}],
        [{**good, "id": b"x"}],
        [{**good, "key": b"short"}],
        [{**good, "thumb": b"x" * 100_000}],
        [good] * 100,
    ]
    for v in values:
        parsed = entries.parse(v)
        assert all(e.name == "b.txt" and e.size == 3 for e in parsed)
        assert len(parsed) <= entries.MAX_PER_POST
    assert entries.parse([{**good, "thumb": b"x" * 100_000}])[0].thumb is None


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from p2p.blobs import exchange as bx  # noqa: E402

_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), _values.map(lambda v: msgpack.packb(v))))
def test_manifest_parser_only_ever_says_bad_attachment(data: bytes) -> None:
    try:
        m = mf.parse(data)
    except BadAttachment:
        return
    assert len(m.hashes) == mf.chunk_count(m.size)  # whatever passes is consistent


@settings(max_examples=200, deadline=None)
@given(_values)
def test_post_entries_parse_any_signed_value(value: object) -> None:
    for e in entries.parse(value):
        assert len(e.id) == 32 and 0 <= e.size <= mf.MAX_SIZE and "/" not in e.name


@given(st.lists(st.integers(0, 63)), st.lists(st.integers(0, 63)))
def test_bitmap_union_holds_both(a: list[int], b: list[int]) -> None:
    def bits(ns: list[int]) -> bytes:
        out = bytearray(8)
        for n in ns:
            out[n // 8] |= 0x80 >> (n % 8)
        return bytes(out) or b"\x00"

    aid = b"\x01" * 32
    merged = bx.union({aid: bits(a)}, {aid: bits(b)})[aid]
    assert {n for n in range(64) if bx.has_bit(merged, n)} == set(a) | set(b)


def test_read_ahead_gives_each_chunk_checked_and_forgets_a_damaged_one(home) -> None:
    """Chunks read one ahead on a helper thread come back in the order asked,
    each checked; a rotten or missing one is None and no longer counted as held
    (as read_chunk does), and a chunk read ahead but not asked for is dropped."""
    store = BlobStore(home)
    data = os.urandom(4 * CHUNK + 5)
    aid, m = _add(store, data)
    store.path(m.hashes[1]).write_bytes(b"rot")
    store.path(m.hashes[3]).unlink()
    with store.read_ahead() as chunks:
        got = [
            chunks.get(h, m.hashes[i + 1] if i + 1 < len(m.hashes) else None)
            for i, h in enumerate(m.hashes)
        ]
        again = chunks.get(m.hashes[0], m.hashes[4])  # out of order: still right
        last = chunks.get(m.hashes[2])  # the one read ahead (4) is dropped
    assert got[0] == data[:CHUNK] and got[2] == data[2 * CHUNK : 3 * CHUNK]
    assert got[4] == data[4 * CHUNK :] and got[1] is None and got[3] is None
    assert again == data[:CHUNK] and last == data[2 * CHUNK : 3 * CHUNK]
    assert store.presence(aid).have == 3


def test_read_ahead_keeps_several_reads_in_flight_and_follows_a_change_of_plan(home) -> None:
    """With the next hashes given (up to DEPTH read meanwhile), chunks still come
    back in the order asked and checked; a shorter or different list of next
    hashes (a budget ran out) drops what was read ahead, and nothing is mixed up."""
    store = BlobStore(home)
    data = os.urandom(9 * CHUNK + 7)
    _aid, m = _add(store, data)
    want = [data[i * CHUNK : (i + 1) * CHUNK] for i in range(len(m.hashes))]
    with store.read_ahead() as chunks:
        got = [chunks.get(h, m.hashes[i + 1 :]) for i, h in enumerate(m.hashes[:5])]
        assert len(chunks.ahead) == ReadAhead.DEPTH  # 5..8 in flight, no more
        got.append(chunks.get(m.hashes[8], [m.hashes[2]]))  # skipped 5..7: dropped
        got.append(chunks.get(m.hashes[2], []))
        assert not chunks.ahead
        got.append(chunks.get(m.hashes[9]))
    assert got == want[:5] + [want[8], want[2], want[9]]
