"""Hostile and damaged bundles: each is refused with one plain sentence, and the
store stays byte-for-byte as it was."""

from __future__ import annotations

import io
import struct
import time
from pathlib import Path

import blake3
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p import community as cm
from p2p import content, invites
from p2p.bundle import container, parts
from p2p.bundle import export as ex
from p2p.bundle.importer import import_bundle
from p2p.bundle.verify import verify_bundle
from p2p.errors import (
    BadBundleSignature,
    BundleCorrupt,
    BundleError,
    BundleTooLarge,
    BundleTruncated,
    PartMismatch,
    UnsupportedVersion,
)
from p2p.home import Home
from p2p.identity import Identity
from tests.helpers import dump, make_home


@pytest.fixture
def setup(tmp_path: Path):
    alice = make_home(tmp_path / "alice", "Alice")
    bob = make_home(tmp_path / "bob", "Bob")
    c = cm.create(alice, "Village")
    invites.join(bob, invites.write(alice, c))
    content.post(alice, c, "hello")
    path = tmp_path / "good.p2p"
    with ex.scratch_dir(alice) as s:
        ex.place(ex.build(alice, ex.domains([c])[0], Path(s)), path)
    yield alice, bob, c, path
    alice.close()
    bob.close()


def raw_bundle(identity: Identity, body: bytes, version: int = 1) -> bytes:
    """A container with hand-made record bytes and a valid trailer over them."""
    import hashlib

    header = msgpack.packb({"exporter": identity.public_key, "created": int(time.time())})
    pre = container.MAGIC + struct.pack(">HI", version, len(header)) + header + body
    pre += struct.pack(">I", 0)
    count = 1
    digest = hashlib.sha256(pre).digest() if version == 1 else blake3.blake3(pre).digest()
    sig = identity.sign(container.TAGS.get(version, b"") + digest + struct.pack(">Q", count))
    return pre + struct.pack(">Q", count) + digest + sig


def refused(bob: Home, tmp_path: Path, data: bytes, error: type[BundleError]) -> str:
    path = tmp_path / "bad.p2p"
    path.write_bytes(data)
    before = dump(bob)
    with pytest.raises(error) as caught:
        import_bundle(bob, [path])
    assert dump(bob) == before
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300
    with pytest.raises(error):
        verify_bundle([path])
    return message


def test_every_truncation_is_detected(setup, tmp_path: Path) -> None:
    _alice, bob, _c, path = setup
    data = path.read_bytes()
    before = dump(bob)
    for n in range(1, len(data)):
        with pytest.raises(BundleError):
            container.read_all(io.BytesIO(data[:n]))
    cut = tmp_path / "cut.p2p"
    cut.write_bytes(data[: len(data) - 1])
    with pytest.raises(BundleTruncated, match="cut short"):
        import_bundle(bob, [cut])
    assert dump(bob) == before


def test_every_single_bit_flip_is_detected(setup) -> None:
    _alice, _bob, _c, path = setup
    data = path.read_bytes()
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            flipped = bytearray(data)
            flipped[i] ^= bit
            with pytest.raises(BundleError):
                container.read_all(io.BytesIO(bytes(flipped)))


def test_trailer_signed_by_another_key(setup, tmp_path: Path) -> None:
    alice, bob, c, _path = setup
    out = io.BytesIO()
    records = [{"t": "note", "x": 1}]
    container.write_bundle(out, alice.identity, records, signer=Identity.generate())
    msg = refused(bob, tmp_path, out.getvalue(), BadBundleSignature)
    assert "signature" in msg


def test_record_claiming_huge_length(setup, tmp_path: Path) -> None:
    alice, bob, _c, _ = setup
    body = struct.pack(">I", 0xFFFFFFFF) + b"\x80"
    t = time.perf_counter()
    msg = refused(bob, tmp_path, raw_bundle(alice.identity, body), BundleTooLarge)
    assert time.perf_counter() - t < 2  # refused before allocating or reading 4 GiB
    assert "limit" in msg


def test_deeply_nested_msgpack(setup, tmp_path: Path) -> None:
    alice, bob, _c, _ = setup
    nested = b"\x81\xa1t" + b"\x91" * 100_000 + b"\xc0"
    body = struct.pack(">I", len(nested)) + nested
    refused(bob, tmp_path, raw_bundle(alice.identity, body), BundleCorrupt)


def test_oversized_msgpack_containers(setup, tmp_path: Path) -> None:
    alice, bob, _c, _ = setup
    # a map claiming 2^32-1 entries in a 6-byte record
    bomb = b"\xdf\xff\xff\xff\xff\xa1t"
    body = struct.pack(">I", len(bomb)) + bomb
    refused(bob, tmp_path, raw_bundle(alice.identity, body), BundleCorrupt)
    # a bin claiming more bytes than the record holds
    lie = b"\x82\xa1t\xa1x\xa1d\xc6\x7f\xff\xff\xff"
    body = struct.pack(">I", len(lie)) + lie
    refused(bob, tmp_path, raw_bundle(alice.identity, body), BundleCorrupt)
    # a bounded reader refuses a record over its limit
    out = io.BytesIO()
    container.write_bundle(out, alice.identity, [{"t": "doc", "data": b"x" * 5000}])
    with pytest.raises(BundleTooLarge):
        container.read_all(io.BytesIO(out.getvalue()), max_record=1000)


@pytest.mark.parametrize("version", [0, 3, 65535])
def test_unknown_version(setup, tmp_path: Path, version: int) -> None:
    alice, bob, _c, _ = setup
    rec = msgpack.packb({"t": "x"})
    data = raw_bundle(alice.identity, struct.pack(">I", len(rec)) + rec, version=version)
    msg = refused(bob, tmp_path, data, UnsupportedVersion)
    assert "upgrade" in msg and f"version {version};" in msg


@pytest.mark.parametrize("version", [1, 2])
def test_hand_made_bundle_of_each_version_reads(version: int) -> None:
    """The trailer as docs/bundle-format.md §1 says, per version (raw_bundle is
    written from it): SHA-256 and tag v1, or BLAKE3 and tag v2."""
    me = Identity.generate()
    rec = msgpack.packb({"t": "x"})
    data = raw_bundle(me, struct.pack(">I", len(rec)) + rec, version=version)
    reader = container.BundleReader(io.BytesIO(data))
    assert list(reader.records()) == [{"t": "x"}] and reader.header.version == version


def test_a_signature_of_one_version_does_not_verify_as_the_other(setup, tmp_path: Path) -> None:
    """The signed message names the version (its tag): a v2 trailer whose
    signature was made over the v1 message is refused, whatever the digest."""
    alice, bob, _c, _ = setup
    rec = msgpack.packb({"t": "x"})
    data = bytearray(raw_bundle(alice.identity, struct.pack(">I", len(rec)) + rec, version=2))
    digest, count = bytes(data[-96:-64]), bytes(data[-104:-96])
    data[-64:] = alice.identity.sign(container.TAGS[1] + digest + count)
    refused(bob, tmp_path, bytes(data), BadBundleSignature)


def test_a_v2_digest_that_does_not_match_is_refused(setup, tmp_path: Path) -> None:
    """A version 2 trailer with its BLAKE3 altered (and signed again, by the
    exporter): the digest no longer matches the bytes."""
    alice, bob, _c, path = setup
    data = bytearray(path.read_bytes())
    assert data[8:10] == b"\x00\x02"
    data[-96] ^= 1
    digest, count = bytes(data[-96:-64]), bytes(data[-104:-96])
    data[-64:] = alice.identity.sign(container.TAGS[2] + digest + count)
    msg = refused(bob, tmp_path, bytes(data), BundleCorrupt)
    assert "altered or damaged" in msg


def test_duplicate_records(setup, tmp_path: Path) -> None:
    alice, bob, c, _ = setup
    from p2p.exchange import records_for

    doc = next(iter(records_for(alice, None, [c.id])))
    out = io.BytesIO()
    container.write_bundle(out, alice.identity, [doc, doc])
    msg = refused(bob, tmp_path, out.getvalue(), BundleCorrupt)
    assert "duplicate" in msg


def test_trailing_garbage(setup, tmp_path: Path) -> None:
    _alice, bob, _c, path = setup
    refused(bob, tmp_path, path.read_bytes() + b"\x00", BundleCorrupt)


def test_foreign_file_renamed_into_a_part_set(setup, tmp_path: Path) -> None:
    alice, bob, c, path = setup
    for i in range(20):
        content.post(alice, c, f"filler {i} " + "abcdefghij" * 20)
    big = tmp_path / "big.p2p"
    with ex.scratch_dir(alice) as s:
        ex.place(ex.build(alice, ex.domains([c])[0], Path(s)), big)
    from p2p.bundle import stick

    d1, d2 = tmp_path / "one", tmp_path / "two"
    d1.mkdir()
    d2.mkdir()
    set1 = stick.write_to_stick(big, d1, max_file_size=600)
    set2 = stick.write_to_stick(big, d2, max_file_size=600)
    assert len(set1) >= 3
    # replace part 2 of set 1 by part 2 of another set of the very same bundle
    set2[1].replace(set1[1])
    before = dump(bob)
    with pytest.raises(PartMismatch):
        import_bundle(bob, [set1[0]])
    set1[2].unlink()
    with pytest.raises(PartMismatch):
        parts.open_parts([set1[0], set1[1]])
    assert dump(bob) == before


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(data: bytes) -> None:
    for blob in (data, container.MAGIC + data):
        try:
            container.read_all(io.BytesIO(blob))
        except BundleError:
            continue
        raise AssertionError("random bytes were accepted as a bundle")


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.text(max_size=5), st.binary(max_size=50), max_size=4),
        max_size=6,
        unique_by=lambda d: repr(sorted(d.items())),
    )
)
def test_container_round_trip(maps) -> None:
    me = Identity.generate()
    records = [{**m, "t": "x"} for m in maps]
    unique = []
    for r in records:
        if r not in unique:
            unique.append(r)
    out = io.BytesIO()
    stats = container.write_bundle(out, me, unique, created=1234)
    header, got = container.read_all(io.BytesIO(out.getvalue()))
    assert got == unique and header.exporter == me.public_key and header.created == 1234
    assert stats.count == len(unique) and stats.size == len(out.getvalue())


# --- faults while writing to a stick (simulated: the only mocks in these tests) ---


def _stick_write(setup, tmp_path: Path, monkeypatch, fail_with: OSError, after: int):
    from p2p.bundle import stick

    _alice, _bob, _c, path = setup
    dest = tmp_path / "stick"
    dest.mkdir()
    real_open = Path.open
    written = {"n": 0}

    class Failing:
        def __init__(self, fh) -> None:
            self.fh = fh

        def write(self, data: bytes) -> int:
            written["n"] += len(data)
            if written["n"] > after:
                raise fail_with
            return self.fh.write(data)

        def __getattr__(self, name: str):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.fh.close()

    def fake_open(self, mode="r", *args, **kwargs):
        fh = real_open(self, mode, *args, **kwargs)
        return Failing(fh) if self.parent == dest and "w" in mode else fh

    monkeypatch.setattr(Path, "open", fake_open)
    return stick.write_to_stick, path, dest


def test_disk_full_mid_write_leaves_nothing(setup, tmp_path: Path, monkeypatch) -> None:
    import errno

    from p2p.errors import StickFull

    write, path, dest = _stick_write(
        setup, tmp_path, monkeypatch, OSError(errno.ENOSPC, "No space left on device"), 500
    )
    with pytest.raises(StickFull, match="ran out of space"):
        write(path, dest)
    assert list(dest.iterdir()) == []


def test_stick_pulled_mid_write_leaves_nothing(setup, tmp_path: Path, monkeypatch) -> None:
    import errno

    from p2p.errors import WriteVerifyFailed

    write, path, dest = _stick_write(
        setup, tmp_path, monkeypatch, OSError(errno.EIO, "Input/output error"), 300
    )
    with pytest.raises(WriteVerifyFailed, match="stick removed"):
        write(path, dest, max_file_size=600)  # even in the middle of a part set
    assert list(dest.iterdir()) == []


def test_bad_read_back_removes_the_file(setup, tmp_path: Path, monkeypatch) -> None:
    from p2p.bundle import stick
    from p2p.errors import WriteVerifyFailed

    _alice, _bob, _c, path = setup
    dest = tmp_path / "stick"
    dest.mkdir()
    monkeypatch.setattr(stick, "_hash_range", lambda *_a: b"\x00" * 32)  # a lying stick
    with pytest.raises(WriteVerifyFailed, match="did not read back"):
        stick.write_to_stick(path, dest)
    assert list(dest.iterdir()) == []


def test_compressed_changes_bomb_and_damage_are_rejected(setup, tmp_path: Path) -> None:
    """A `changes-zlib` record that would inflate past the record limit, or that is
    cut short, is rejected as malformed; nothing is stored and memory stays bounded."""
    import zlib

    from p2p.exchange import records_for

    alice, bob, c, _ = setup
    good = next(r for r in records_for(alice, None, [c.id]) if r["kind"] == "feed")
    bomb = zlib.compress(b"\0" * (65 * 1024 * 1024), 9)
    packed = zlib.compress(b"\x85\x6f\x4a\x83" + b"x" * 500)
    for data, fragment in ((bomb, "beyond the record limit"), (packed[:-3], "cut short")):
        out = io.BytesIO()
        container.write_bundle(out, alice.identity, [{**good, "enc": "changes-zlib", "data": data}])
        path = tmp_path / "z.p2p"
        path.write_bytes(out.getvalue())
        before = content_rows(bob)
        result = import_bundle(bob, [path])
        assert [r.reason for r in result.report.rejected if fragment in r.reason]
        assert content_rows(bob) == before  # (the bundle itself is noted as seen)


def content_rows(home: Home) -> list[str]:
    return [
        r for r in dump(home) if not r.startswith(('INSERT INTO "peer', 'INSERT INTO "bundles'))
    ]
