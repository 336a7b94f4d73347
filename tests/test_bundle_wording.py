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
