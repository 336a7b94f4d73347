"""Container versions 1 and 2 (docs/bundle-format.md §1, §5): version 2 is
written by default and read through the real CLI, open and private; version 1
is written on request (for a p2p from before version 2, which the version 1
reader of test_bundle_spec stands for) and still read; and the files and rows a
p2p from before version 2 left (named by SHA-256, not BLAKE3) are recognised."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
from pathlib import Path

import blake3
import pytest

from p2p import community as cm
from p2p import content, invites
from p2p.bundle import export as ex
from p2p.bundle import usb
from p2p.bundle.importer import import_bundle
from p2p.home import Home
from tests.helpers import cli, make_home
from tests.test_bundle_spec import Fault, read_container

NAMED = [  # (table, column): every row keyed by a bundle file's name
    ("bundles_seen", "sha256"),
    ("bundle_files", "sha256"),
    ("bundles_written", "sha256"),
    ("bundle_contents", "sha256"),
    ("bundle_inventories", "sha256"),
    ("blob_carried", "bundle"),
]


def _version(path: Path) -> int:
    return struct.unpack(">H", path.read_bytes()[8:10])[0]


def _inner_version(path: Path, key: str, tmp: Path) -> int:
    """The container version inside an age file, opened with the standard tool."""
    (tmp / "k.txt").write_text(key + "\n")
    plain = subprocess.run(
        ["age", "-d", "-i", str(tmp / "k.txt"), str(path)], capture_output=True, timeout=60
    ).stdout
    assert plain.startswith(b"P2PBNDL\n")
    return struct.unpack(">H", plain[8:10])[0]


@pytest.fixture
def pair(tmp_path: Path):
    """Alice and Bob through the CLI, both in an open and a private community."""
    a, b = tmp_path / "a", tmp_path / "b"
    for home, name in ((a, "Alice"), (b, "Bob")):
        assert cli(home, "init", "--no-passphrase", "--name", name).returncode == 0
    ids = {}
    for kind in ("open", "private"):
        extra = ["--private"] if kind == "private" else []
        made = cli(a, "community", "create", f"{kind} village", *extra, "--json")
        ids[kind] = json.loads(made.stdout)["id"]
        inv = tmp_path / f"{kind}.inv"
        word = {"P2P_INVITE_PASSPHRASE": "river bridge"}  # a private invite needs one
        made = cli(a, "community", "invite", ids[kind], "--out", str(inv), **word)
        assert made.returncode == 0, made.stderr
        assert cli(b, "community", "join", str(inv), **word).returncode == 0
        assert cli(a, "post", ids[kind], f"hello {kind}").returncode == 0
    return a, b, ids


@pytest.mark.parametrize("kind", ["open", "private"])
@pytest.mark.parametrize("version", [1, 2])
def test_round_trip_through_the_cli(pair, tmp_path: Path, kind: str, version: int) -> None:
    a, b, ids = pair
    out = tmp_path / f"{kind}-{version}.p2p"
    flag = ["--bundle-version", "1"] if version == 1 else []  # 2 is the default
    made = cli(a, "export", ids[kind], "--out", str(out), *flag)
    assert made.returncode == 0, made.stderr
    if kind == "open":
        assert _version(out) == version
        if version == 1:  # what a p2p from before version 2 reads
            read_container(out.read_bytes(), versions=(1,))
        else:  # ... and refuses, saying so
            with pytest.raises(Fault, match="UnsupportedVersion"):
                read_container(out.read_bytes(), versions=(1,))
    else:  # an age file: what is inside is checked in the next test
        assert out.read_bytes().startswith(b"age-encryption.org/v1\n")
    v = cli(b, "verify", str(out), "--json")
    assert v.returncode == 0, v.stderr
    assert json.loads(v.stdout)["ok"] is True
    imp = cli(b, "import", str(out), "--json")
    assert imp.returncode == 0, imp.stderr
    assert json.loads(imp.stdout)[0]["new_posts"] == 1
    posts = json.loads(cli(b, "feed", ids[kind], "--json").stdout)
    assert [p["text"] for p in posts] == [f"hello {kind}"]


def test_private_bundle_holds_the_version_asked_for(tmp_path: Path) -> None:
    alice = make_home(tmp_path / "alice", "Alice")
    c = cm.create(alice, "Night school", private=True)
    content.post(alice, c, "Tuesday")
    for version in (1, 2):
        with ex.scratch_dir(alice) as s:
            built = ex.build(alice, ex.domains([c])[0], Path(s), version=version)
            assert built is not None
            assert _inner_version(built.path, c.secret, tmp_path) == version
            # named by the BLAKE3 of the ciphertext: a carrier without the key can too
            assert built.name == blake3.blake3(built.path.read_bytes()).digest()
    alice.close()


def test_usb_sync_writes_the_version_asked_for(pair, tmp_path: Path) -> None:
    a, b, _ids = pair
    for version, stick in ((1, tmp_path / "s1"), (2, tmp_path / "s2")):
        stick.mkdir()
        flag = ["--bundle-version", "1"] if version == 1 else []
        done = cli(a, "usb", "sync", str(stick), *flag)
        assert done.returncode == 0, done.stderr
        plain = [p for p in stick.iterdir() if p.read_bytes().startswith(b"P2PBNDL\n")]
        assert len(plain) == 1 and _version(plain[0]) == version  # the open communities
        got = json.loads(cli(b, "usb", "sync", str(stick), "--json").stdout)
        assert len(got["imported"]) == 2  # the open and the private bundle


def test_an_unknown_version_flag_is_refused(pair, tmp_path: Path) -> None:
    a, _b, _ids = pair
    bad = cli(a, "export", "--out", str(tmp_path / "x.p2p"), "--bundle-version", "3")
    assert bad.returncode == 2 and "--bundle-version" in bad.stderr
    assert not (tmp_path / "x.p2p").exists()


# --- rows and files left by a p2p from before version 2 (named by SHA-256) ---


def _as_before_version_2(home: Home, files: list[Path]) -> None:
    """Rename every row keyed by one of these files' BLAKE3 name to its SHA-256,
    as a p2p from before version 2 had written them."""
    with home.store.transaction() as db:
        for f in files:
            new = blake3.blake3(f.read_bytes()).digest()
            old = hashlib.sha256(f.read_bytes()).digest()
            for table, column in NAMED:
                db.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", (old, new))


@pytest.mark.parametrize("private", [False, True])
def test_a_version_1_file_seen_before_version_2_is_recognised(
    tmp_path: Path, private: bool
) -> None:
    alice = make_home(tmp_path / "alice", "Alice")
    bob = make_home(tmp_path / "bob", "Bob")
    c = cm.create(alice, "Village", private=private)
    invites.join(bob, invites.write(alice, c))
    content.post(alice, c, "hello")
    path = tmp_path / "old.p2p"
    with ex.scratch_dir(alice) as s:
        ex.place(ex.build(alice, ex.domains([c])[0], Path(s), version=1), path)
    first = import_bundle(bob, [path])
    assert not first.already_imported and first.digest == blake3.blake3(path.read_bytes()).digest()
    _as_before_version_2(bob, [path])
    again = import_bundle(bob, [path])
    assert again.already_imported  # by the SHA-256 its earlier import recorded
    alice.close()
    bob.close()


def test_a_stick_written_before_version_2_is_recognised(tmp_path: Path) -> None:
    """Alice's and Bob's v1 bundles on the stick, each imported by the other,
    every row under SHA-256 names; the stat cache lost (a stick mounted again):
    each knows their own file as theirs and the other's as already imported,
    and neither writes anything new."""
    alice = make_home(tmp_path / "alice", "Alice")
    bob = make_home(tmp_path / "bob", "Bob")
    c = cm.create(alice, "Village")
    invites.join(bob, invites.write(alice, c))
    content.post(alice, c, "hello")
    stick = tmp_path / "stick"
    stick.mkdir()
    usb.sync(alice, stick, version=1)
    (hers,) = list(stick.iterdir())
    assert usb.sync(bob, stick, version=1).imported
    assert usb.sync(alice, stick, version=1).imported  # Bob's
    files = sorted(stick.iterdir())
    assert len(files) == 2
    for home in (alice, bob):
        _as_before_version_2(home, files)
        home.store.db.execute("DELETE FROM bundle_files")  # forgotten by stat
    for home in (alice, bob):
        again = usb.sync(home, stick)
        assert (again.own, again.already, again.imported, again.written) == (1, 1, [], [])
    assert hers.exists()
    alice.close()
    bob.close()


def test_the_v1_vectors_and_demo_still_read(tmp_path: Path) -> None:
    """The files shipped before version 2 (vectors/, the demo) are version 1 and
    import as they did."""
    root = Path(__file__).resolve().parents[1] / "bundles"
    assert _version(root / "vectors" / "valid.p2p") == 1
    assert _version(root / "vectors" / "v2" / "valid.p2p") == 2
    home = make_home(tmp_path / "h", "Reader")
    invites.join(home, (root / "demo-invite.p2p").read_bytes())
    copy = tmp_path / "demo.p2p"
    shutil.copy(root / "demo.p2p", copy)
    assert _version(copy) == 1
    assert import_bundle(home, [copy]).news.posts > 0
    home.close()
