"""What the bundle commands say: counts that match, each fault named once."""

from __future__ import annotations

import json
from pathlib import Path

from p2p import community as cm
from p2p import content, invites, signing
from p2p.accept import from_record
from p2p.bundle.container import write_bundle
from p2p.bundle.records import community_record
from p2p.exchange import records_for
from p2p.identity import Identity
from tests.helpers import cli, make_home


def test_changes_signed_by_a_foreign_key_are_each_rejected_once(tmp_path: Path) -> None:
    alice = make_home(tmp_path / "a", "Alice")
    bob = make_home(tmp_path / "b", "Bob")
    c = cm.create(alice, "Village")
    invites.join(bob, invites.write(alice, c))
    for i in range(16):
        content.post(alice, c, f"post {i}")
    stranger = Identity.generate()
    records = [community_record(alice, c)]
    changes = 0
    for r in records_for(alice, None, [c.id]):
        if r["kind"] == "feed":  # Alice's feed, vouched for by a stranger's key
            r["sigs"] = [
                [h, stranger.public_key, stranger.sign(signing.TAG + r["doc"] + h)]
                for h, _s, _g in r["sigs"]
            ]
            changes = len(from_record(r).changes)
        records.append(r)
    path = tmp_path / "foreign.p2p"
    with path.open("wb") as fh:
        write_bundle(fh, stranger, records, 0)
    alice.close()
    bob.close()
    r = cli(tmp_path / "b", "import", str(path), "--json")
    assert r.returncode == 1
    (got,) = json.loads(r.stdout)
    rejected = [x["change"] for x in got["rejected"]]
    assert len(rejected) == changes >= 16
    assert len(set(rejected)) == len(rejected)
    text = cli(tmp_path / "b", "import", str(path))
    assert f"{changes} REJECTED" in text.stdout, text.stdout
    v = cli(tmp_path / "nobody", "verify", str(path), "--json")
    faults = json.loads(v.stdout)["faults"]
    assert len(faults) == changes, faults


def test_community_key_opens_its_bundles_with_age(tmp_path: Path) -> None:
    import shutil
    import subprocess

    import pytest

    if shutil.which("age") is None:
        pytest.skip("the age command is not installed")
    home = tmp_path / "a"
    assert cli(home, "init", "--no-passphrase", "--name", "Alice").returncode == 0
    made = cli(home, "community", "create", "Night school", "--private", "--json")
    cid = json.loads(made.stdout)["id"]
    assert cli(home, "post", cid, "Lessons move to Tuesday.").returncode == 0
    bundle = tmp_path / "night.p2p"
    assert cli(home, "export", cid, "--out", str(bundle)).returncode == 0
    key = tmp_path / "key.txt"
    r = cli(home, "community", "key", cid, "--out", str(key))
    assert r.returncode == 0, r.stderr
    assert "SECRET KEY" in r.stderr  # the warning
    assert (key.stat().st_mode & 0o777) == 0o600
    opened = subprocess.run(
        ["age", "-d", "-i", str(key), str(bundle)], capture_output=True, timeout=60
    )
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.startswith(b"P2PBNDL\n")
    assert b"Lessons move to Tuesday." not in bundle.read_bytes()
    # never over an existing file without --force; an open community has no key
    again = cli(home, "community", "key", cid, "--out", str(key))
    assert again.returncode != 0 and len(again.stderr.strip().splitlines()) == 1
    open_id = json.loads(cli(home, "community", "create", "Market", "--json").stdout)["id"]
    r = cli(home, "community", "key", open_id, "--out", str(tmp_path / "k2"))
    assert r.returncode == 1 and "no key" in r.stderr and not (tmp_path / "k2").exists()
