"""Commands that need no secret never derive the key (real CLI).

Bob's identity is sealed in the older age format, which any successful unlock
rewrites as p2p-sealed-v2. The commands below run with the RIGHT
`P2P_PASSPHRASE` (so an unlock would succeed, and could not hide behind an
error that a command tolerates), and the stored blob must stay the old one;
they also run with a wrong one, which must not matter."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pyrage
import pytest
from pyrage import x25519

from p2p import community as cm
from p2p import content, invites
from p2p import identity as ident
from p2p.home import Home
from tests.helpers import cli, make_home

PASS = "correct horse battery staple"


def bob(home: Path, *args: str, passphrase: str = PASS) -> subprocess.CompletedProcess:
    return cli(home, *args, P2P_PASSPHRASE=passphrase, P2P_AGENT_DIR=str(home / "no-agent"))


def still_age_sealed(home: Path) -> bool:
    con = sqlite3.connect(home / "p2p.db")
    try:
        return con.execute("SELECT sealed FROM identity").fetchone()[0].startswith(b"age-")
    finally:
        con.close()


def ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0, res.stderr
    return res


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("nosecret")
    alice = make_home(root / "alice", "Alice")
    open_c = cm.create(alice, "Open square")
    private_c = cm.create(alice, "Back room", private=True)
    content.post(alice, open_c, "hello square")
    content.post(alice, private_c, "hello room")
    b = Home(root / "bob", lambda _creating: PASS)
    b.create_identity(PASS)
    invites.join(b, invites.write(alice, private_c))
    recipient = b.public_identity().age_recipient
    with b.store.transaction() as db:
        db.execute("UPDATE identity SET sealed = ?", (ident.backup(b.identity, PASS),))
    b.close()
    alice.close()
    plain, private = root / "plain.p2p", root / "private.p2p"
    ok(cli(root / "alice", "export", open_c.id.hex(), "--out", str(plain)))
    ok(cli(root / "alice", "export", private_c.id.hex(), "--out", str(private)))
    to_bob = root / "to-bob.p2p"  # a bundle only Bob's own identity key opens
    with plain.open("rb") as src, to_bob.open("wb") as dst:
        pyrage.encrypt_io(src, dst, [x25519.Recipient.from_str(recipient)])
    return {
        "bob": root / "bob",
        "plain": plain,
        "private": private,
        "to_bob": to_bob,
        "private_id": private_c.id.hex(),
    }


@pytest.mark.parametrize(
    "args",
    [
        ("whoami",),
        ("whoami", "--json"),
        ("feed", "{private_id}"),
        ("verify", "{plain}"),
        ("inspect", "{plain}"),
        ("verify", "{private}"),  # opened with the community key, not the identity
        ("inspect", "{private}"),
    ],
)
def test_reading_commands_never_unlock(world: dict, args: tuple[str, ...]):
    argv = [a.format(**{k: str(v) for k, v in world.items()}) for a in args]
    ok(bob(world["bob"], *argv))
    assert still_age_sealed(world["bob"])
    res = ok(bob(world["bob"], *argv, passphrase="WRONG"))
    assert "passphrase" not in res.stderr


def test_import_of_a_bundle_not_encrypted_to_us_never_unlocks(world: dict):
    ok(bob(world["bob"], "import", str(world["plain"]), passphrase="WRONG"))
    ok(bob(world["bob"], "import", str(world["private"])))
    assert still_age_sealed(world["bob"])
    feed = json.loads(ok(bob(world["bob"], "feed", world["private_id"], "--json")).stdout)
    assert [p["text"] for p in feed] == ["hello room"]


def test_a_bundle_encrypted_to_our_identity_unlocks_it_only_then(world: dict):
    res = bob(world["bob"], "import", str(world["to_bob"]), passphrase="WRONG")
    assert res.returncode == 1 and "wrong passphrase" in res.stderr  # it did need the key
    assert still_age_sealed(world["bob"])
    ok(bob(world["bob"], "verify", str(world["to_bob"])))
    assert not still_age_sealed(world["bob"])  # unlocked (and resealed) this time
    ok(bob(world["bob"], "import", str(world["to_bob"])))
