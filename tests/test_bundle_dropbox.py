"""The USB drop box through the real CLI: one bad file never stops it, a
read-only stick says so, content already on the stick is not written again,
and one sync's files carry one modification time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from p2p import community as cm
from p2p import content, invites
from p2p.bundle.verify import verify_bundle
from tests.helpers import cli, make_home


def _js(r: subprocess.CompletedProcess) -> dict:
    assert r.stdout, r.stderr
    return json.loads(r.stdout)


@pytest.fixture
def village(tmp_path: Path):
    """Alice (owner) and Bob, Carol (members) with homes on disk; a stick."""
    alice = make_home(tmp_path / "alice", "Alice")
    c = cm.create(alice, "Village")
    invite = invites.write(alice, c)
    for name in ("bob", "carol"):
        h = make_home(tmp_path / name, name.title())
        invites.join(h, invite)
        h.close()
    content.post(alice, c, "from alice")
    alice.close()
    stick = tmp_path / "stick"
    stick.mkdir()
    return tmp_path, c, stick


def test_bad_files_are_set_aside_and_the_rest_flows(village) -> None:
    tmp, c, stick = village
    assert cli(tmp / "alice", "usb", "sync", str(stick)).returncode == 0
    (good,) = list(stick.iterdir())
    data = good.read_bytes()
    (stick / "aaaa000000000001.p2p").write_bytes(data[: len(data) // 2])  # cut short
    tampered = bytearray(data)
    tampered[len(data) // 2] ^= 1
    (stick / "aaaa000000000002.p2p").write_bytes(bytes(tampered))
    (stick / "aaaa000000000003.p2p").write_bytes(b"holiday photos\n" * 10)  # foreign
    (stick / "aaaa000000000004.p2p.001").write_bytes(b"P2PPART\n" + b"\x00" * 10)  # broken part
    (stick / ".tmp-0123456789ab").write_bytes(data[:100])  # an interrupted write
    (stick / "notes.txt").write_text("not ours to judge")
    r = cli(tmp / "bob", "usb", "sync", str(stick), "--json")
    assert r.returncode == 0, r.stderr
    got = _js(r)
    assert len(got["imported"]) == 1 and got["imported"][0]["new_posts"] == 1
    aside = {x["file"]: x["reason"] for x in got["set_aside"]}
    assert set(aside) == {
        "aaaa000000000001.p2p",
        "aaaa000000000002.p2p",
        "aaaa000000000003.p2p",
        "aaaa000000000004.p2p.001",
    }
    assert "cut short" in aside["aaaa000000000001.p2p"]
    assert "not a p2p bundle" in aside["aaaa000000000003.p2p"]
    assert got["cleaned_temporary_files"] == [".tmp-0123456789ab"]
    assert not (stick / ".tmp-0123456789ab").exists()
    assert (stick / "notes.txt").exists()
    assert len(got["written"]) == 1  # Bob's profile, for Alice
    # the text report names each file set aside, one line each
    r = cli(tmp / "carol", "usb", "sync", str(stick))
    assert r.returncode == 0, r.stderr
    for name in aside:
        assert sum(name in line for line in r.stdout.splitlines()) == 1, r.stdout


def test_content_already_on_the_stick_is_not_written_again(village) -> None:
    tmp, c, stick = village
    assert cli(tmp / "alice", "usb", "sync", str(stick)).returncode == 0
    assert cli(tmp / "bob", "post", c.hex, "from bob").returncode == 0
    assert cli(tmp / "bob", "usb", "sync", str(stick)).returncode == 0
    before = set(stick.iterdir())
    r = cli(tmp / "carol", "usb", "sync", str(stick), "--json")
    assert r.returncode == 0, r.stderr
    got = _js(r)
    assert len(got["imported"]) == 2
    # Carol writes only what is hers: Alice's and Bob's documents are on the stick already
    for written in got["written"]:
        docs = verify_bundle([Path(f) for f in written["files"]]).docs
        owners = {d.owner for d in docs}
        carol_key = bytes.fromhex(_js(cli(tmp / "carol", "whoami", "--json"))["public_key"])
        assert owners <= {carol_key}, [(d.kind, d.owner.hex()[:8]) for d in docs]
    assert before <= set(stick.iterdir())


def test_one_sync_writes_its_files_with_one_time(tmp_path: Path) -> None:
    alice = make_home(tmp_path / "alice", "Alice")
    c = cm.create(alice, "Village")
    secret = cm.create(alice, "Inner circle", private=True)
    content.post(alice, c, "open")
    content.post(alice, secret, "private")
    alice.close()
    stick = tmp_path / "stick"
    stick.mkdir()
    r = cli(tmp_path / "alice", "usb", "sync", str(stick), "--json")
    assert r.returncode == 0, r.stderr
    files = [Path(f) for w in _js(r)["written"] for f in w["files"]]
    assert len(files) == 2
    times = {os.stat(f).st_mtime for f in files}
    assert len(times) == 1
    (t,) = times
    assert t % 3600 == 0


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root for a ro mount"
)
def test_read_only_stick_says_so_and_still_imports(village) -> None:
    tmp, c, stick = village
    assert cli(tmp / "alice", "usb", "sync", str(stick)).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    env["P2P_HOME"] = str(tmp / "bob")
    s = str(stick)
    script = (
        f"mount --bind {s} {s} && mount -o remount,ro,bind {s} && "
        f"{sys.executable} -m p2p.cli.main usb sync {s} --json"
    )
    r = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 1, r.stderr
    got = json.loads(r.stdout)
    assert len(got["imported"]) == 1
    assert "read-only" in got["problem"]
    r = subprocess.run(
        ["unshare", "-m", "sh", "-c", script.replace(" --json", "")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 1
    assert "read-only" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
