"""`usb sync` reading: a bundle new to this home is read once (its import names
it), one read before is recognised by its file's stat without being read again,
and a file changed since is read again."""

from __future__ import annotations

import os
from pathlib import Path

import blake3
import pytest

from p2p import community as cm
from p2p import content, invites
from p2p.bundle import importer, usb
from tests.helpers import make_home


@pytest.fixture
def stick_from_alice(tmp_path: Path):
    alice = make_home(tmp_path / "alice", "Alice")
    bob = make_home(tmp_path / "bob", "Bob")
    c = cm.create(alice, "Village")
    invites.join(bob, invites.write(alice, c))
    content.post(alice, c, "from alice")
    stick = tmp_path / "stick"
    stick.mkdir()
    usb.sync(alice, stick)
    yield alice, bob, stick
    alice.close()
    bob.close()


def _count(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"hash": 0, "import": 0}
    real_hash, real_import = usb.file_digest, usb.import_bundle

    def hashing(files: list[Path]) -> bytes:
        calls["hash"] += 1
        return real_hash(files)

    def importing(*a, **kw) -> importer.ImportResult:  # noqa: ANN002, ANN003
        calls["import"] += 1
        return real_import(*a, **kw)

    monkeypatch.setattr(usb, "file_digest", hashing)
    monkeypatch.setattr(usb, "import_bundle", importing)
    return calls


def test_a_new_bundle_is_read_once_and_then_known_by_its_stat(
    stick_from_alice, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, stick = stick_from_alice
    (theirs,) = [p for p in stick.iterdir() if p.suffix == ".p2p"]
    calls = _count(monkeypatch)
    first = usb.sync(bob, stick)
    assert len(first.imported) == 1 and calls == {"hash": 0, "import": 1}
    digest = blake3.blake3(theirs.read_bytes()).digest()  # its name (§5)
    assert first.imported[0].digest == digest
    seen = bob.store.db.execute("SELECT 1 FROM bundles_seen WHERE sha256 = ?", (digest,))
    assert seen.fetchone() is not None
    calls.update({"hash": 0, "import": 0})
    second = usb.sync(bob, stick)  # Bob's own bundle is on the stick now: hashed by name
    assert second.already == 1 and not second.imported
    assert calls["import"] == 0 and calls["hash"] == 1
    calls["hash"] = 0
    third = usb.sync(bob, stick)
    assert third.already == 1 and third.own >= 1 and calls == {"hash": 0, "import": 0}


def test_a_changed_file_is_read_again(stick_from_alice, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob, stick = stick_from_alice
    (theirs,) = [p for p in stick.iterdir() if p.suffix == ".p2p"]
    usb.sync(bob, stick)
    data = theirs.read_bytes()
    st = theirs.stat()
    theirs.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, same mtime
    os.utime(theirs, ns=(st.st_atime_ns, st.st_mtime_ns))
    calls = _count(monkeypatch)
    again = usb.sync(bob, stick)
    assert calls["import"] == 1  # its change time moved: not taken for the one read before
    assert [name for name, _why in again.damaged] == [theirs.name]


def test_a_bundle_already_imported_by_hand_is_only_counted(
    stick_from_alice, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, stick = stick_from_alice
    (theirs,) = [p for p in stick.iterdir() if p.suffix == ".p2p"]
    importer.import_bundle(bob, [theirs])
    got = usb.sync(bob, stick)
    assert got.already == 1 and not got.imported
