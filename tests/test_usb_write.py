"""`usb sync` writes each bundle in place on the stick, once: a stick pulled or
full in the middle, or a stick that does not read back what was written,
leaves no bundle (only a hidden temporary the next sync removes), and a bundle
that says done is whole, durable and carries its attachment."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from p2p import community as cm
from p2p import content, invites
from p2p.blobs import attach
from p2p.blobs.manifest import CHUNK
from p2p.bundle import stick, usb
from p2p.bundle.names import file_digest
from p2p.bundle.verify import verify_bundle
from p2p.errors import StickFull, WriteVerifyFailed
from tests.helpers import make_home


@pytest.fixture
def sender(tmp_path: Path):
    """Ana, in an open and a private community, each post carrying 3 MiB + 5 bytes."""
    ana = make_home(tmp_path / "ana", "Ana")
    big = tmp_path / "film.bin"
    big.write_bytes(os.urandom(3 * CHUNK + 5))
    made = []
    for private in (False, True):
        c = cm.create(ana, "Private" if private else "Open", private=private)
        entries = attach.add_files(ana, [big], private=private)
        content.post(ana, c, "a film", attachments=[e.as_doc() for e in entries])
        made.append(c)
    yield ana, made, big
    ana.close()


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_written_in_place_whole_and_named_by_its_digest(sender, tmp_path: Path) -> None:
    ana, made, big = sender
    s = tmp_path / "stick"
    s.mkdir()
    r = usb.sync(ana, s)
    assert r.problem is None
    assert len(r.written) == 2  # one file per encryption domain
    names = _files(s)
    assert len(names) == 2 and all(n.endswith(".p2p") and not n.startswith(".") for n in names)
    keys = {c.id: c for c in made}
    for paths, built in r.written:
        (path,) = paths
        assert built.name == file_digest([path])  # remembered by what is on the stick
        assert built.name == stick.read_back(path)  # and checked by reading it back
        assert built.extra["attachments"].sent_bytes >= big.stat().st_size
    private = [paths[0] for paths, b in r.written if b.encrypted]
    assert len(private) == 1 and private[0].read_bytes().startswith(b"age-encryption.org/v1\n")
    plain = [paths[0] for paths, b in r.written if not b.encrypted]
    assert verify_bundle(plain).ok
    assert {c.id for _p, b in r.written for c in b.domain.communities} == set(keys)


def test_stick_pulled_mid_write_leaves_no_bundle(sender, tmp_path: Path, monkeypatch) -> None:
    ana, _made, _big = sender
    s = tmp_path / "stick"
    s.mkdir()
    from p2p import direct

    real = direct._write_all
    written = {"n": 0}

    def pulled(fd: int, view: memoryview, offset: int) -> None:
        written["n"] += len(view)
        if written["n"] > CHUNK:
            raise OSError(errno.EIO, "Input/output error")
        real(fd, view, offset)

    monkeypatch.setattr(direct, "_write_all", pulled)
    r = usb.sync(ana, s)
    assert isinstance(r.problem, WriteVerifyFailed) and "stick removed" in str(r.problem)
    assert [n for n in _files(s) if not n.startswith(".")] == []  # no bundle, whole or half
    monkeypatch.setattr(direct, "_write_all", real)
    again = usb.sync(ana, s)  # the next sync cleans up and writes it all
    assert again.problem is None and len(again.written) == 2
    assert all(not n.startswith(".") for n in _files(s))


def test_full_stick_mid_write_says_so_and_keeps_nothing(
    sender, tmp_path: Path, monkeypatch
) -> None:
    ana, _made, _big = sender
    s = tmp_path / "stick"
    s.mkdir()
    from p2p import direct

    def full(fd: int, view: memoryview, offset: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(direct, "_write_all", full)
    r = usb.sync(ana, s)
    assert isinstance(r.problem, StickFull)
    assert _files(s) == []


def test_bad_read_back_from_the_stick_removes_the_bundle(
    sender, tmp_path: Path, monkeypatch
) -> None:
    ana, _made, _big = sender
    s = tmp_path / "stick"
    s.mkdir()
    monkeypatch.setattr(stick, "read_back", lambda *_a: b"\x00" * 32)  # a lying stick
    r = usb.sync(ana, s)
    assert isinstance(r.problem, WriteVerifyFailed) and "did not read back" in str(r.problem)
    assert _files(s) == []


def test_interrupted_in_place_write_is_cleaned_by_the_next_sync(sender, tmp_path: Path) -> None:
    ana, _made, _big = sender
    s = tmp_path / "stick"
    s.mkdir()
    (s / ".p2p-0123456789abcdef.tmp").write_bytes(b"P2PBNDL\n half")
    (s / ".p2p-notours.tmp").write_bytes(b"x")  # not our pattern: left alone
    r = usb.sync(ana, s)
    assert r.cleaned == [".p2p-0123456789abcdef.tmp"]
    assert ".p2p-notours.tmp" in _files(s)


def test_large_bundle_is_split_into_verified_parts(sender, tmp_path: Path) -> None:
    """Over --max-file-size the in-place bundle is copied into parts (each read
    back, the set verified) and the whole one removed."""
    ana, _made, big = sender
    s = tmp_path / "stick"
    s.mkdir()
    r = usb.sync(ana, s, max_file_size=CHUNK)
    assert r.problem is None
    names = _files(s)
    assert names and all(".p2p.0" in n for n in names), names
    b = make_home(tmp_path / "bo", "Bo")
    for c in cm.all_communities(ana):
        invites.join(b, invites.write(ana, c))
    got = usb.sync(b, s)
    assert len(got.imported) == 2 and not got.damaged
    # open: the plain bytes; private: the same sealed (16 bytes more per chunk)
    assert sum(x.attachments.size for x in got.imported) == 2 * big.stat().st_size + 4 * 16
    b.close()
