"""Never destroy what the user did not ask to destroy; homes and file modes.

Through the real CLI: output files refuse to replace (unless --force) and never
replace a device or a fifo; a failed `identity import` leaves the home as it was;
only init / identity import / community join / demo create a home; the data
directory is 0700 and every file written for the user 0600, even with umask 000.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import cli

PASS = "correct horse battery staple"


def ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0, res.stderr
    return res


def refused(res: subprocess.CompletedProcess, kind: str) -> None:
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("error: "), res.stderr


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A home with a community, a post; (home, community id, feed document id)."""
    home = tmp_path_factory.mktemp("files") / "ann"
    ok(cli(home, "init", "--no-passphrase", "--name", "Ann"))
    cid = json.loads(ok(cli(home, "community", "create", "Town", "--json")).stdout)["id"]
    ok(cli(home, "post", cid, "hello"))
    docs = json.loads(ok(cli(home, "doc", "list", cid, "--json")).stdout)
    feed = next(d["id"] for d in docs if d["kind"] == "feed")
    return home, cid, feed


def writers(cid: str, feed: str) -> dict[str, list[str]]:
    """Each command that writes a user file, with OUT where the file goes."""
    return {
        "export": ["export", "--out", "OUT"],
        "identity export": ["identity", "export", "OUT"],
        "community invite": ["community", "invite", cid, "--out", "OUT", "--no-passphrase"],
        "doc export": ["doc", "export", feed, "--out", "OUT"],
    }


def run_writer(home: Path, argv: list[str], out: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [str(out) if a == "OUT" else a for a in argv]
    return cli(home, *args, *extra, P2P_PASSPHRASE=PASS)


@pytest.mark.parametrize("name", ["export", "identity export", "community invite", "doc export"])
def test_existing_output_is_refused_unless_force(town, tmp_path: Path, name: str) -> None:
    home, cid, feed = town
    argv = writers(cid, feed)[name]
    out = tmp_path / "precious.txt"
    out.write_bytes(b"my thesis, the only copy")
    res = run_writer(home, argv, out)
    refused(res, "output_exists")
    assert "already exists" in res.stderr and "--force" in res.stderr
    assert out.read_bytes() == b"my thesis, the only copy"
    doc = json.loads(run_writer(home, argv, out, "--json").stdout)
    assert doc["kind"] == "output_exists" and doc["path"] == str(out)
    assert out.read_bytes() == b"my thesis, the only copy"
    ok(run_writer(home, argv, out, "--force"))
    assert out.read_bytes() != b"my thesis, the only copy" and out.stat().st_size > 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["precious.txt"]  # no temporary left


@pytest.mark.parametrize("name", ["export", "identity export", "community invite", "doc export"])
def test_never_writes_into_a_fifo_or_device(town, tmp_path: Path, name: str) -> None:
    home, cid, feed = town
    argv = writers(cid, feed)[name]
    targets = []
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    targets.append(fifo)
    if os.geteuid() == 0:  # a device node of our own (a copy of /dev/null), never the real one
        dev = tmp_path / "null"
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        targets.append(dev)
    for target in targets:
        before = os.lstat(target)
        for extra in ((), ("--force",)):
            res = run_writer(home, argv, target, *extra)
            refused(res, "not_a_regular_file")
            assert "not a regular file" in res.stderr, res.stderr
            after = os.lstat(target)
            assert (after.st_ino, after.st_mode, after.st_rdev) == (
                before.st_ino,
                before.st_mode,
                before.st_rdev,
            )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(t.name for t in targets)


def test_failed_identity_import_leaves_the_home_as_it_was(tmp_path: Path) -> None:
    src = tmp_path / "src"
    ok(cli(src, "init", "--name", "Ann", P2P_PASSPHRASE=PASS))
    backup = tmp_path / "ann.key"
    ok(cli(src, "identity", "export", str(backup), P2P_PASSPHRASE=PASS))
    damaged = tmp_path / "damaged.key"
    damaged.write_bytes(backup.read_bytes()[:-40])

    fresh = tmp_path / "fresh"
    for file, phrase in ((backup, "wrong"), (damaged, PASS)):
        res = cli(fresh, "identity", "import", str(file), P2P_PASSPHRASE=phrase)
        assert res.returncode == 1 and len(res.stderr.splitlines()) == 1, res.stderr
        assert not fresh.exists(), list(fresh.iterdir())

    empty = tmp_path / "empty"  # an existing folder (e.g. made by the user): stays empty
    empty.mkdir()
    res = cli(empty, "identity", "import", str(backup), P2P_PASSPHRASE="wrong")
    assert res.returncode == 1 and list(empty.iterdir()) == []

    ok(cli(fresh, "identity", "import", str(backup), P2P_PASSPHRASE=PASS))
    me = json.loads(ok(cli(fresh, "whoami", "--json")).stdout)
    assert me["fingerprint"] == json.loads(cli(src, "whoami", "--json").stdout)["fingerprint"]


def test_only_creating_commands_create_a_home(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    for args in (["feed", "abcd"], ["whoami"], ["community", "list"], ["export", "--out", "x"]):
        res = cli(missing, *args)
        assert res.returncode == 1 and "no p2p data directory" in res.stderr, res.stderr
        assert str(missing) in res.stderr and len(res.stderr.splitlines()) == 1
        assert not missing.exists()
    ok(cli(missing, "init", "--no-passphrase"))
    assert (missing / "p2p.db").is_file()


def run_umask0(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    env.update(P2P_HOME=str(home), P2P_PASSPHRASE=PASS, P2P_INVITE_PASSPHRASE="owl owl")
    return subprocess.run(
        [sys.executable, "-m", "p2p.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        preexec_fn=lambda: os.umask(0),  # noqa: PLW1509 - the point of the test
    )


def test_modes_whatever_the_umask(tmp_path: Path) -> None:
    home = tmp_path / "deep" / "home"
    ok(run_umask0(home, "init", "--name", "Ann"))
    cid = json.loads(ok(run_umask0(home, "community", "create", "T", "--private", "--json")).stdout)
    ok(run_umask0(home, "post", cid["id"], "hello"))
    out = tmp_path / "out"
    out.mkdir()
    ok(run_umask0(home, "community", "invite", cid["id"], "--out", str(out / "inv")))
    ok(run_umask0(home, "identity", "export", str(out / "key")))
    ok(run_umask0(home, "export", "--out", str(out / "b.p2p")))
    for d in (home, home.parent, *(p for p in home.rglob("*") if p.is_dir())):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    con = sqlite3.connect(home / "p2p.db")  # hold it open: the WAL and SHM files exist
    con.execute("SELECT count(*) FROM docs").fetchone()
    files = [p for p in home.rglob("*") if p.is_file()] + list(out.iterdir())
    assert {p.name for p in files} >= {"p2p.db", "p2p.db-wal", "p2p.db-shm", "inv", "key", "b.p2p"}
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, (p, oct(p.stat().st_mode))
    con.close()


def test_editing_a_deleted_post_is_refused(town) -> None:
    home, cid, _ = town
    made = json.loads(ok(cli(home, "post", cid, "to be deleted", "--json")).stdout)
    ok(cli(home, "delete", cid, made["id"]))
    res = cli(home, "edit", cid, made["id"], "resurrected")
    assert res.returncode == 1 and "deleted" in res.stderr, res.stderr
    assert json.loads(cli(home, "edit", cid, made["id"], "x", "--json").stdout)["kind"] == (
        "post_deleted"
    )
    posts = json.loads(ok(cli(home, "feed", cid, "--json")).stdout)
    gone = next(p for p in posts if p["id"] == made["id"])
    assert gone["deleted"] and gone["text"] == ""
