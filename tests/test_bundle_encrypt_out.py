"""A private community's bundle, encrypted as it is written (p2p's age writer;
pyrage on a thread for a passphrase), is a standard age file that opens for
members; a failing encryption, a failing writer or a header pyrage refuses
leaves nothing behind and says why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from p2p import community as cm
from p2p import content, invites
from p2p.blobs import attach
from p2p.blobs.manifest import CHUNK
from p2p.bundle import agewrite, crypt
from p2p.bundle import export as ex
from p2p.bundle.importer import import_bundle
from p2p.bundle.names import file_digest
from p2p.errors import P2PError
from tests.helpers import make_home


@pytest.fixture
def private(tmp_path: Path):
    ana = make_home(tmp_path / "ana", "Ana")
    bo = make_home(tmp_path / "bo", "Bo")
    c = cm.create(ana, "Secret", private=True)
    invites.join(bo, invites.write(ana, c))
    big = tmp_path / "doc.bin"
    big.write_bytes(os.urandom(2 * CHUNK + 3))
    entries = attach.add_files(ana, [big], private=True)
    content.post(ana, c, "sealed", attachments=[e.as_doc() for e in entries])
    yield ana, bo, c, big
    ana.close()
    bo.close()


def _export(home, c, dest: Path) -> ex.Built:  # noqa: ANN001
    with ex.scratch_dir(home) as tmp:
        built = ex.build(home, ex.domains([c])[0], Path(tmp), out_dir=dest.parent)
        assert built is not None
        ex.place(built, dest)
        return built


def test_private_bundle_opens_for_a_member(private, tmp_path: Path) -> None:
    ana, bo, c, big = private
    out = tmp_path / "out" / "b.p2p"
    out.parent.mkdir()
    built = _export(ana, c, out)
    assert out.read_bytes().startswith(b"age-encryption.org/v1\n")
    assert built.name == file_digest([out])  # the digest taken while writing
    assert b"sealed" not in out.read_bytes() and b"doc.bin" not in out.read_bytes()
    got = import_bundle(bo, [out])
    assert got.attachments.chunks == 3
    assert got.attachments.size == big.stat().st_size + 3 * 16


def test_failing_encryption_leaves_nothing(private, tmp_path: Path, monkeypatch) -> None:
    ana, _bo, c, _big = private
    real = agewrite.AgeWriter._seal
    calls = []

    def broken(self, block, last):  # noqa: ANN001, ANN202
        calls.append(last)
        if len(calls) == 20:  # a MiB in: the sealing fails (a fault, simulated)
            raise OSError("age: out of luck")
        return real(self, block, last)

    monkeypatch.setattr(agewrite.AgeWriter, "_seal", broken)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OSError, match="out of luck"):
        _export(ana, c, out / "b.p2p")
    assert list(out.iterdir()) == []


def test_failing_passphrase_encryption_leaves_nothing(private, tmp_path: Path, monkeypatch) -> None:
    ana, _bo, c, _big = private

    def broken(src, dst, passphrase):  # noqa: ANN001, ANN202
        src.read(100)
        raise OSError("age: out of luck")

    monkeypatch.setattr(crypt, "encrypt_passphrase", broken)
    out = tmp_path / "out"
    out.mkdir()
    with ex.scratch_dir(ana) as tmp, pytest.raises(OSError, match="out of luck"):
        ex.build(ana, ex.domains([c])[0], Path(tmp), out_dir=out, passphrase="long enough words")
    assert list(out.iterdir()) == []


def test_a_header_pyrage_refuses_is_never_written(private, tmp_path: Path, monkeypatch) -> None:
    """Our age writer disagreeing with pyrage (a header with a wrong MAC, as a bug
    would make) stops the export before a byte of the bundle is kept."""
    ana, _bo, c, _big = private
    real = agewrite.header

    def wrong_mac(recipient: str, file_key: bytes) -> bytes:
        head = bytearray(real(recipient, file_key))
        head[-3] = ord("A") if head[-3] != ord("A") else ord("B")
        return bytes(head)

    monkeypatch.setattr(agewrite, "header", wrong_mac)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(P2PError, match="disagrees with pyrage"):
        _export(ana, c, out / "b.p2p")
    assert list(out.iterdir()) == []


def test_failing_writer_stops_the_encryption(private, tmp_path: Path, monkeypatch) -> None:
    """The records fail half way (a chunk unreadable by a bug, say): that error is
    the one raised, age stops (no plaintext cut short is ever sealed), no file."""
    ana, _bo, c, _big = private
    real = ex._records

    def failing(*a, **k):  # noqa: ANN002, ANN003, ANN202
        for i, r in enumerate(real(*a, **k)):
            if i == 5:
                raise RuntimeError("bug in the middle")
            yield r

    monkeypatch.setattr(ex, "_records", failing)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError, match="bug in the middle"):
        _export(ana, c, out / "b.p2p")
    assert list(out.iterdir()) == []


def test_hand_over_reads_like_a_file() -> None:
    h = ex.HandOver(depth=64)
    pieces = [b"a" * 10, b"b" * (300 * 1024), b"c" * 7, b"d" * (1 << 20)]
    for p in pieces:
        h.write(p)
    h.close()
    whole = b"".join(pieces)
    got = h.read(8192) + h.read(300 * 1024) + h.read()
    assert got == whole and h.read(10) == b""
