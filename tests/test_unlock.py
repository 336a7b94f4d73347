"""Unlock once per session: the agent, its limits, and the sealed format (real CLI)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pyrage
import pytest

from p2p import agent
from p2p import community as cm
from p2p import identity as ident
from p2p.errors import WrongPassphrase
from p2p.home import Home
from p2p.identity import Identity
from tests.helpers import cli

PASS = "correct horse battery staple"


def ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0, res.stderr
    return res


@pytest.fixture
def agent_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A socket directory of this test's own (short path: sockets allow 108 bytes)."""
    path = Path(f"/tmp/p2p-test-{os.getpid()}-{time.monotonic_ns() % 10**6}")
    monkeypatch.setenv("P2P_AGENT_DIR", str(path))
    yield path
    if path.exists():
        os.chmod(path, 0o700)
    for sock in path.glob("*.sock"):  # end any agent a failed test left
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(2)
            with contextlib.suppress(OSError):
                conn.connect(str(sock))
                agent._send(conn, {"op": "lock"})
                conn.recv(4096)
    shutil.rmtree(path, ignore_errors=True)


def run(home: Path, *args: str, passphrase: str | None = None) -> subprocess.CompletedProcess:
    extra = {"P2P_AGENT_DIR": os.environ["P2P_AGENT_DIR"]}
    if passphrase is not None:
        extra["P2P_PASSPHRASE"] = passphrase
    return cli(home, *args, **extra)


def protected_home(tmp_path: Path) -> tuple[Path, str]:
    """A passphrase-protected home with one community (made in-process: fast)."""
    path = tmp_path / "h"
    home = Home(path)
    home.create_identity(PASS)
    community = cm.create(home, "V")
    home.close()
    return path, community.id.hex()


def test_unlock_once_then_commands_need_no_passphrase_until_lock(tmp_path: Path, agent_dir: Path):
    home, cid = protected_home(tmp_path)
    assert run(home, "post", cid, "locked").returncode == 1  # no passphrase, no agent
    ok(run(home, "unlock", "--for", "10m", passphrase=PASS))
    ok(run(home, "post", cid, "while unlocked"))  # no P2P_PASSPHRASE at all
    # the directory is ours and closed, the socket 0600, nothing else is in it
    assert stat.S_IMODE(agent_dir.stat().st_mode) == 0o700
    socks = list(agent_dir.iterdir())
    assert len(socks) == 1 and stat.S_ISSOCK(socks[0].stat().st_mode)
    assert stat.S_IMODE(socks[0].stat().st_mode) == 0o600
    status = json.loads(ok(run(home, "unlock", "--json")).stdout)
    assert status["state"] == "already unlocked"
    assert json.loads(ok(run(home, "whoami", "--json")).stdout)["unlocked_until"] > time.time()
    assert "Locked" in ok(run(home, "lock")).stdout
    assert not list(agent_dir.iterdir())  # the agent removed its socket
    assert json.loads(ok(run(home, "whoami", "--json")).stdout)["unlocked_until"] is None
    res = run(home, "post", cid, "after lock")
    assert res.returncode == 1 and "passphrase" in res.stderr
    feed = json.loads(ok(run(home, "feed", cid, "--json")).stdout)
    assert sorted(p["text"] for p in feed) == ["while unlocked"]


def test_the_agent_dies_at_its_timeout(tmp_path: Path, agent_dir: Path):
    home, cid = protected_home(tmp_path)
    ok(run(home, "unlock", "--for", "1s", passphrase=PASS))
    assert agent.status(home) is not None
    time.sleep(2.5)
    assert agent.status(home) is None and not list(agent_dir.glob("*.sock"))
    assert run(home, "post", cid, "too late").returncode == 1
    ok(run(home, "unlock", "--for", "1h", "--idle", "1s", passphrase=PASS))
    time.sleep(2.5)
    assert agent.status(home) is None  # idle timeout


def test_a_wrong_passphrase_starts_no_agent(tmp_path: Path, agent_dir: Path):
    home, _ = protected_home(tmp_path)
    res = run(home, "unlock", passphrase="wrong")
    assert res.returncode == 1 and "wrong passphrase" in res.stderr
    assert agent.status(home) is None


def test_an_agent_serves_only_its_own_home(tmp_path: Path, agent_dir: Path):
    home, _ = protected_home(tmp_path)
    other = tmp_path / "other"
    Home(other).create_identity("another")
    ok(run(home, "unlock", passphrase=PASS))
    assert agent.status(other) is None
    assert run(other, "community", "create", "W").returncode == 1
    ok(run(home, "lock"))


def test_unlocked_keys_never_touch_the_disk(tmp_path: Path, agent_dir: Path):
    home, cid = protected_home(tmp_path)
    ok(run(home, "unlock", passphrase=PASS))
    got = agent.fetch(home)
    assert got is not None
    secret = Identity.from_secret_bytes(got[1]).secret_bytes()
    seed = secret[secret.index(b"ed25519") + 9 : secret.index(b"ed25519") + 41]
    ok(run(home, "post", cid, "x"))
    for path in [*home.rglob("*"), *agent_dir.rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert seed not in data and b"AGE-SECRET-KEY" not in data, path
    ok(run(home, "lock"))


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_another_user_cannot_use_the_agent(tmp_path: Path, agent_dir: Path):
    home, _ = protected_home(tmp_path)
    ok(run(home, "unlock", passphrase=PASS))
    sock = next(agent_dir.glob("*.sock"))
    probe = """
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(3)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("refused", e.errno)
    sys.exit()
req = bytes.fromhex("81a26f70a3676574")  # msgpack {"op": "get"}
try:
    s.sendall(struct.pack(">I", len(req)) + req)
    print("answer", len(s.recv(9999)))
except OSError:
    print("answer 0")
"""
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]

    def try_as_nobody() -> str:
        res = subprocess.run([*nobody, "-c", probe, str(sock)], capture_output=True, text=True)
        return res.stdout.strip()

    # as installed: the 0700 directory keeps other users out
    assert try_as_nobody().startswith("refused")
    # even if the directory and socket were opened by mistake, the agent checks
    # the caller's uid (SO_PEERCRED) and answers nothing
    os.chmod(agent_dir, 0o711)
    os.chmod(sock, 0o666)
    assert try_as_nobody() == "answer 0"
    os.chmod(agent_dir, 0o700)
    assert agent.fetch(home) is not None  # the owner still gets it
    # and our client refuses a socket directory open to others
    os.chmod(agent_dir, 0o755)
    assert agent.fetch(home) is None
    os.chmod(agent_dir, 0o700)
    ok(run(home, "lock"))


def test_new_seal_format_and_work_factor():
    me = Identity.generate()
    blob = ident.seal(me, PASS)
    assert blob.startswith(b"p2p-sealed-v2\n") and me.secret_bytes() not in blob
    assert ident.unseal(blob, PASS).public_key == me.public_key
    with pytest.raises(WrongPassphrase):
        ident.unseal(blob, "nope")
    assert blob[len(ident.SEALED_V2) + 16] == 16  # log2 N
    assert ident.backup(me, PASS).startswith(b"age-encryption.org/v1\n")


def test_an_age_sealed_store_still_unlocks_and_is_resealed(tmp_path: Path, agent_dir: Path):
    home, cid = protected_home(tmp_path)
    con = sqlite3.connect(home / "p2p.db")
    blob = con.execute("SELECT sealed FROM identity").fetchone()[0]
    old = pyrage.passphrase.encrypt(ident.unseal(blob, PASS).secret_bytes(), PASS)
    with con:
        con.execute("UPDATE identity SET sealed = ?", (old,))
    con.close()
    ok(run(home, "post", cid, "after upgrade", passphrase=PASS))
    con = sqlite3.connect(home / "p2p.db")
    now = con.execute("SELECT sealed FROM identity").fetchone()[0]
    con.close()
    assert now.startswith(b"p2p-sealed-v2\n")
    ok(run(home, "post", cid, "again", passphrase=PASS))
    assert run(home, "post", cid, "no", passphrase="wrong").returncode == 1


def test_a_restored_identity_is_resealed_and_warned_about_forks(tmp_path: Path, agent_dir: Path):
    me = Identity.generate()
    backup = tmp_path / "backup.age"
    backup.write_bytes(ident.backup(me, PASS))
    home = tmp_path / "new-device"
    res = ok(run(home, "identity", "import", str(backup), passphrase=PASS))
    assert "Before you write anything with this identity" in res.stderr.replace("\n", " ")
    con = sqlite3.connect(home / "p2p.db")
    sealed = con.execute("SELECT sealed FROM identity").fetchone()[0]
    con.close()
    assert sealed.startswith(b"p2p-sealed-v2\n")
    assert ident.unseal(sealed, PASS).public_key == me.public_key
    other = tmp_path / "json-device"
    out = json.loads(
        ok(run(other, "identity", "import", str(backup), "--json", passphrase=PASS)).stdout
    )
    assert "set aside for everyone" in out["warning"]
