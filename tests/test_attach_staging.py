"""Chunks are written once, while a bundle is proven, where nothing reads them
(`blobs/.staging-*`); only a bundle whose trailer verifies moves them into place.
An encrypted bundle is decrypted once (by the `age` CLI when installed, else
pyrage), with the same errors either way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from p2p import community as cm
from p2p import invites
from p2p.blobs import store as blob_store
from p2p.blobs.manifest import CHUNK
from p2p.blobs.store import BlobStore
from p2p.bundle import container, source
from p2p.bundle import export as ex
from p2p.bundle.importer import import_bundle, keys_for
from p2p.bundle.verify import verify_bundle
from p2p.errors import BadBundleSignature, BundleCorrupt, BundleError, WrongKey
from p2p.identity import Identity
from tests.helpers import dump, make_home
from tests.test_attach_flow import _bundle, _post_file, _posts, homes  # noqa: F401


def _files(home) -> list[Path]:  # noqa: ANN001
    root = home.path / "blobs"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _staged_count(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    written: list[int] = []
    real = blob_store.Staging._write

    def spy(self: blob_store.Staging, digest: bytes, data: bytes) -> Path:
        written.append(len(data))
        return real(self, digest, data)

    monkeypatch.setattr(blob_store.Staging, "_write", spy)
    return written


@pytest.mark.parametrize("fault", ["cut", "trailer", "signer"])
def test_a_bundle_whose_trailer_fails_leaves_no_chunk_anywhere(
    homes,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
) -> None:
    a, b, c = homes
    e = _post_file(a, c, os.urandom(3 * CHUNK + 7))
    good = tmp_path / "x.p2p"
    _bundle(a, good)
    data = bytearray(good.read_bytes())
    bad = tmp_path / "bad.p2p"
    if fault == "cut":  # every chunk is there, the trailer is not
        bad.write_bytes(bytes(data[:-50]))
    elif fault == "trailer":
        data[-1] ^= 1
        bad.write_bytes(bytes(data))
    else:  # validly signed, by someone the header does not name
        recs = []
        for d in ex.domains(cm.all_communities(a)):
            recs += list(ex._records(a, d, None, None))
        with bad.open("wb") as out:
            container.write_bundle(out, a.identity, recs, signer=Identity.generate())
    written = _staged_count(monkeypatch)
    before = dump(b)
    with pytest.raises(BundleError) as err:
        import_bundle(b, [bad])
    if fault == "signer":
        assert isinstance(err.value, BadBundleSignature)
    assert sum(written) == 3 * CHUNK + 7  # staged as read, every chunk once ...
    assert dump(b) == before and _files(b) == []  # ... and none of it left anywhere
    import_bundle(b, [good])
    assert BlobStore(b).presence(e.id).state == "whole"
    assert [p.parent.name for p in _files(b)] and not any(
        p.parent.name.startswith(blob_store.STAGING) for p in _files(b)
    )


@pytest.mark.parametrize("hold", [container.HOLD, 0])
def test_chunks_are_hashed_and_written_once_whether_replayed_or_read_again(
    homes,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    hold: int,
) -> None:
    """HOLD=0: the other records do not fit in memory, so the bundle is read a
    second time, where the staged chunks come as their stand-ins (bound by chain)."""
    a, b, c = homes
    e = _post_file(a, c, os.urandom(2 * CHUNK + 1))
    _bundle(a, tmp_path / "x.p2p")
    monkeypatch.setattr(container, "HOLD", hold)
    readings: list[bool] = []
    real_init = container.BundleReader.__init__

    def counting(self, stream, *args, **kw) -> None:  # noqa: ANN001
        readings.append(kw.get("proven") is not None)
        real_init(self, stream, *args, **kw)

    monkeypatch.setattr(container.BundleReader, "__init__", counting)
    written = _staged_count(monkeypatch)
    r = import_bundle(b, [tmp_path / "x.p2p"])
    assert readings == ([False] if hold else [False, True])
    assert sum(written) == 2 * CHUNK + 1 and r.attachments.chunks == 3
    assert BlobStore(b).presence(e.id).state == "whole"
    assert "post with f.bin" in _posts(b, c)
    res = verify_bundle([tmp_path / "x.p2p"])
    assert res.ok and res.blobs.chunks == 3 and res.blobs.size == 2 * CHUNK + 1


def test_a_record_cannot_pass_itself_off_as_a_staged_chunk(homes, tmp_path: Path) -> None:  # noqa: F811
    """A record carrying its own "staged" (a path, a size, a hash) is a malformed
    chunk: refused, and the file it names is never moved."""
    a, b, c = homes
    e = _post_file(a, c, os.urandom(CHUNK + 3))
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")

    def forge(recs: list[dict]) -> list[dict]:
        for r in recs:
            if r["t"] == "blob-chunk" and r["n"] == 0:
                data = r.pop("data")
                r["staged"] = {"size": len(data), "hash": e.id, "path": str(victim)}
        return recs

    _bundle(a, tmp_path / "x.p2p", forge)
    r = import_bundle(b, [tmp_path / "x.p2p"])
    assert any("malformed" in why for why in r.attachments.refused)
    assert victim.read_bytes() == b"keep me"
    assert BlobStore(b).presence(e.id).state != "whole"


def test_a_staging_folder_left_by_a_killed_import_is_swept(homes) -> None:  # noqa: F811
    _a, b, _c = homes
    store = BlobStore(b)
    left = store.root / f"{blob_store.STAGING}0123456789ab"
    left.mkdir(parents=True)
    (left / ("ab" * 32)).write_bytes(b"x")
    assert store.sweep() == 0  # fresh: it may belong to an import still running
    old = os.stat(left).st_mtime - blob_store.DEBRIS_AGE - 1
    os.utime(left, (old, old))
    assert store.sweep() == 1 and not left.exists()


@pytest.fixture
def private_pair(tmp_path: Path):
    a, b = make_home(tmp_path / "a", "Ana"), make_home(tmp_path / "b", "Bo")
    c = cm.create(a, "Secret", private=True)
    invites.join(b, invites.write(a, c))
    e = _post_file(a, c, os.urandom(2 * CHUNK + 5))
    path = tmp_path / "x.p2p"
    with ex.scratch_dir(a) as s:
        ex.place(ex.build(a, ex.domains([c])[0], Path(s)), path)
    yield a, b, c, e, path
    a.close()
    b.close()


@pytest.mark.parametrize("cli", [True, False], ids=["age-cli", "pyrage"])
def test_private_bundle_decrypted_once_by_either_age(
    private_pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: bool
) -> None:
    a, b, c, e, path = private_pair
    if cli and not source.AGE:
        pytest.skip("the age CLI is not installed (Debian package `age`)")
    if not cli:
        monkeypatch.setattr(source, "AGE", None)
    assert path.read_bytes().startswith(b"age-encryption.org/v1\n")
    before = dump(b)
    with pytest.raises(WrongKey):  # a key that is not the community's
        import_bundle(b, [path], keys=source.Keys([Identity.generate().age_identity]))
    data = path.read_bytes()
    for damaged in (data[: len(data) - CHUNK], data[:-1] + bytes([data[-1] ^ 1])):
        (tmp_path / "bad.p2p").write_bytes(damaged)
        with pytest.raises(BundleCorrupt):
            import_bundle(b, [tmp_path / "bad.p2p"])
        assert dump(b) == before and _files(b) == []
    r = import_bundle(b, [path], keys=keys_for(b))
    assert r.attachments.chunks == 3 and BlobStore(b).presence(e.id).state == "whole"
    assert "post with f.bin" in _posts(b, c)


def _as_p2p_writes(aid: bytes, n: int, data: bytes) -> bytes:
    import msgpack

    return msgpack.packb({"t": "blob-chunk", "id": aid, "n": n, "data": data}, use_bin_type=True)


@pytest.mark.parametrize(
    "aid",
    [os.urandom(32), b"\xa4data\xc4\x05" + os.urandom(25), b"\xa4data\xc6" + bytes(24) + b"\xa4da"],
)
@pytest.mark.parametrize("size", [0, 1, 255, 256, 70000, CHUNK + 16])
def test_a_chunk_record_splits_as_a_full_decoding_reads_it(aid: bytes, size: int) -> None:
    """Fields decoded by msgpack, the data a view of the record's own bytes (no
    copy): the same as a full decoding, even when the id mimics the data key."""
    import msgpack

    data = os.urandom(size)
    body = _as_p2p_writes(aid, 7, data)
    assert body.startswith(container.CHUNK_PREFIX)
    split = container._split_chunk(body)
    assert split is not None
    fields, view = split
    assert isinstance(view, memoryview) and view.obj is body
    assert {**fields, "data": bytes(view)} == msgpack.unpackb(body, raw=False)


def test_other_shapes_are_left_to_the_full_decoding() -> None:
    import msgpack

    later = msgpack.packb({"t": "blob-chunk", "data": b"abc", "id": b"i" * 32, "n": 1})
    assert container._split_chunk(later) is None  # data not last: decoded as any record
    assert container._split_chunk(container.CHUNK_PREFIX + b"\xa4data\xc6\xff") is None
    text = msgpack.packb({"t": "blob-chunk", "id": b"i" * 32, "n": 1, "data": "str"})
    assert container._split_chunk(text) is None


def test_a_full_disk_while_staging_keeps_nothing(
    homes,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno

    a, b, c = homes
    _post_file(a, c, os.urandom(3 * CHUNK))
    _bundle(a, tmp_path / "x.p2p")
    real = blob_store.Staging._write_file
    done: list[int] = []

    def full(self: blob_store.Staging, path: Path, data: memoryview) -> None:
        if done:
            raise OSError(errno.ENOSPC, "No space left on device")
        done.append(1)
        real(self, path, data)

    monkeypatch.setattr(blob_store.Staging, "_write_file", full)
    before = dump(b)
    with pytest.raises(OSError, match="No space"):
        import_bundle(b, [tmp_path / "x.p2p"])
    assert dump(b) == before and _files(b) == []
