"""Incremental inventories: a bundle lists only what changed since a base its
reader holds, and a reader never believes the exporter holds more than it does."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack

from p2p import community as cm
from p2p import content, invites
from p2p.bundle import export as ex
from p2p.bundle import inventories
from p2p.bundle.container import read_all
from p2p.bundle.importer import import_bundle
from p2p.bundle.names import file_digest
from p2p.exchange import inventory, known_by, records_for
from p2p.home import Home
from tests.helpers import cli, make_home


def _inventory_records(path: Path) -> list[dict]:
    with path.open("rb") as fh:
        return [r for r in read_all(fh)[1] if r["t"] == "inventory"]


def _village(tmp_path: Path, members: int) -> tuple[Home, Home, cm.Community]:
    """Alice's community with `members` members who each posted once (shared
    with Alice through bundles), and Bob who joined."""
    alice = make_home(tmp_path / "alice", "Alice")
    c = cm.create(alice, "Village")
    invite = invites.write(alice, c)
    for i in range(members):
        m = make_home(tmp_path / f"m{i}", f"member {i}")
        mc = invites.join(m, invite)
        content.post(m, mc, f"hello from {i}")
        with ex.scratch_dir(m) as s:
            built = ex.build(m, ex.domains([mc])[0], Path(s))
            assert built is not None
            import_bundle(alice, [built.path])
        m.close()
    bob = make_home(tmp_path / "bob", "Bob")
    invites.join(bob, invite)
    return alice, bob, c


def test_one_post_since_lists_one_document(tmp_path: Path) -> None:
    alice, bob, c = _village(tmp_path, 12)
    alice.close()
    full, inc = tmp_path / "full.p2p", tmp_path / "inc.p2p"
    home = tmp_path / "alice"
    assert cli(home, "export", "--out", str(full)).returncode == 0
    r = cli(home, "post", c.hex, "one more")
    assert r.returncode == 0, r.stderr
    r = cli(home, "export", "--since", str(full), "--out", str(inc), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["documents"] == 1
    (record,) = _inventory_records(inc)
    assert len(record["docs"]) == 1 and len(record["base"]) == 32
    assert inc.stat().st_size < full.stat().st_size / 5

    # Bob took both: he knows Alice's whole inventory, exactly
    import_bundle(bob, [full])
    import_bundle(bob, [inc])
    alice = Home(home)
    want = inventory(alice, [c.id])
    got = known_by(bob, alice.public_key)
    assert {d: sorted(h) for d, h in want.items()} == {
        d: sorted(set(h) & set(want[d])) for d, h in got.items() if d in want
    }
    assert set(got) == set(want)
    # so what he sends back is only his own writing
    cb = cm.resolve(bob, c.hex)
    content.post(bob, cb, "bob writes")
    back = list(records_for(bob, known_by(bob, alice.public_key), [c.id]))
    assert {r["owner"] for r in back} == {bob.public_key}
    alice.close()
    bob.close()


def test_reader_without_the_base_learns_only_what_is_listed(tmp_path: Path) -> None:
    alice, bob, c = _village(tmp_path, 4)
    with ex.scratch_dir(alice) as s:
        first = ex.build(alice, ex.domains([c])[0], Path(s))
        assert first is not None
        full = ex.place(first, tmp_path / "full.p2p")
    content.post(alice, c, "later")
    with ex.scratch_dir(alice) as s:
        built = ex.build(alice, ex.domains([c])[0], Path(s), peer=inventory(alice, [c.id]))
        # nothing new for a peer holding all: no bundle
        assert built is None
        built = ex.build(alice, ex.domains([c])[0], Path(s), peer=known_by(alice, bob.public_key))
        assert built is not None
        inc = ex.place(built, tmp_path / "inc.p2p")
    import_bundle(bob, [inc])  # the base (full.p2p) never reached Bob
    known = known_by(bob, alice.public_key)
    assert len(known) == 1  # Alice's feed only
    # Bob may send Alice more than she lacks, never less: every document of his
    # that Alice's listed heads do not cover goes back
    back = {r["doc"] for r in records_for(bob, known, [c.id])}
    mine = inventory(bob, [c.id])
    assert back == {d for d in mine if not set(known.get(d, [])) >= set(mine[d])}
    # the base arriving later completes nothing wrongly: hashes only add up
    import_bundle(bob, [full])
    after = known_by(bob, alice.public_key)
    assert all(set(known[d]) <= set(after[d]) for d in known)
    alice.close()
    bob.close()


def test_a_wrong_digest_claim_is_not_believed(tmp_path: Path) -> None:
    """An inventory whose rebuilt digest differs from its claim teaches only its
    listed documents (a writer's mistake must not make the reader omit things)."""
    from p2p.bundle.container import write_bundle
    from p2p.bundle.records import community_record, inventory_records

    alice, bob, c = _village(tmp_path, 3)
    with ex.scratch_dir(alice) as s:
        built = ex.build(alice, ex.domains([c])[0], Path(s))
        assert built is not None
        import_bundle(bob, [built.path])
    base = built.inventory
    content.post(alice, c, "later")
    full = inventory(alice, [c.id])
    feed = content.feed_ref(c, alice.public_key).id
    path = tmp_path / "lie.p2p"
    with path.open("wb") as fh:
        records = [
            community_record(alice, c),
            *inventory_records({feed: full[feed]}, base=base, digest=b"\x00" * 32),
        ]
        write_bundle(fh, alice.identity, records, 0)
    import_bundle(bob, [path])
    assert inventories.of_bundle(bob, file_digest([path])) is None
    assert set(full[feed]) <= set(known_by(bob, alice.public_key)[feed])
    alice.close()
    bob.close()


def test_digest_is_the_documented_one() -> None:
    import hashlib

    inv = {b"\x02" * 16: [b"\xbb" * 32, b"\xaa" * 32], b"\x01" * 16: [b"\xcc" * 32]}
    expect = hashlib.sha256(
        b"p2p/inventory/v1\x00"
        + b"\x01" * 16
        + b"\x00\x01"
        + b"\xcc" * 32
        + b"\x02" * 16
        + b"\x00\x02"
        + b"\xaa" * 32
        + b"\xbb" * 32
    ).digest()
    assert inventories.digest(inv) == expect
    assert msgpack.unpackb(msgpack.packb(1)) == 1


def test_inventory_vectors_regenerate_byte_for_byte(tmp_path: Path) -> None:
    import subprocess
    import sys

    here = Path(__file__).resolve().parents[1]
    r = subprocess.run(
        [sys.executable, str(here / "bundles" / "inventory_vectors.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    # and p2p itself reads them: the delta's inventory is rebuilt from the base's
    from p2p.bundle.verify import verify_bundle

    vectors = here / "bundles" / "vectors"
    for name in ("inventory-base.p2p", "inventory-delta.p2p"):
        checked = verify_bundle([vectors / name])
        assert checked.ok, checked.faults
    home = make_home(tmp_path / "h", "Reader")
    base = vectors / "inventory-base.p2p"
    delta = vectors / "inventory-delta.p2p"
    from p2p.bundle.importer import Listed

    listed = Listed()
    for r in [x for x in _inventory_records(base)]:
        listed.add(r)
    exporter = verify_bundle([base]).exporter
    whole = listed.full(home, exporter)
    assert whole is not None
    inventories.remember(home, exporter, inventories.scope_of([]), whole)
    again = Listed()
    for r in _inventory_records(delta):
        again.add(r)
    rebuilt = again.full(home, exporter)
    assert rebuilt is not None
    expect = json.loads((vectors / "inventory.json").read_text())
    assert inventories.digest(rebuilt).hex() == expect["digest"]
    home.close()
