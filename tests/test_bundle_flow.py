"""Bundles end to end: export, import, verify, the USB drop box, and bad input.

Real homes, real keys, real files; the CLI runs as a subprocess where the
user-facing behaviour (exit code, one-line error) is what is being checked.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from p2p import community as cm
from p2p import content, feed, invites
from p2p.bundle import export as ex
from p2p.bundle.importer import import_bundle
from p2p.bundle.usb import sync as usb_sync
from p2p.bundle.verify import verify_bundle
from p2p.errors import (
    BundleError,
    NotABundle,
    StickFull,
    WrongKey,
)
from p2p.home import Home
from tests.helpers import cli, dump, make_home

VECTORS = Path(__file__).resolve().parents[1] / "bundles" / "vectors"


def export_file(home: Home, communities: list[cm.Community], out: Path, peer=None) -> Path | None:
    with ex.scratch_dir(home) as tmp:
        built = ex.build(home, ex.domains(communities)[0], Path(tmp), peer=peer)
        if built is None:
            return None
        return ex.place(built, out)


@pytest.fixture
def pair(tmp_path: Path):
    alice = make_home(tmp_path / "alice", "Alice")
    bob = make_home(tmp_path / "bob", "Bob")
    c = cm.create(alice, "Village")
    invites.join(bob, invites.write(alice, c))
    first = content.post(alice, c, "first post")
    content.post(alice, c, "a reply", reply_to=first["id"])
    content.react(alice, c, first["id"], "👍")
    yield alice, bob, c
    alice.close()
    bob.close()


def test_export_import_round_trip(pair, tmp_path: Path) -> None:
    alice, bob, c = pair
    path = export_file(alice, [c], tmp_path / "a.p2p")
    result = import_bundle(bob, [path])
    assert result.news.posts == 2
    assert result.report.rejected == []
    cb = cm.resolve(bob, c.hex)
    assert feed.thread(bob, cb) == feed.thread(alice, c)
    # importing the same bundle again is harmless
    before = dump(bob)
    again = import_bundle(bob, [path])
    assert again.report.applied == 0 and again.news.posts == 0
    assert again.already_imported
    assert [r for r in dump(bob) if "bundles_seen" not in r and "peers" not in r] == [
        r for r in before if "bundles_seen" not in r and "peers" not in r
    ]


def test_for_peer_exports_only_what_is_missing(pair, tmp_path: Path) -> None:
    alice, bob, c = pair
    import_bundle(bob, [export_file(alice, [c], tmp_path / "a.p2p")])
    cb = cm.resolve(bob, c.hex)
    content.post(bob, cb, "bob writes back")
    back = export_file(bob, [cb], tmp_path / "b.p2p")
    import_bundle(alice, [back])  # alice now knows what bob has
    from p2p.exchange import known_by

    content.post(alice, c, "one more from alice")
    delta = export_file(alice, [c], tmp_path / "delta.p2p", peer=known_by(alice, bob.public_key))
    full = tmp_path / "full.p2p"
    export_file(alice, [c], full)
    checked = verify_bundle([delta])
    kinds = sorted(d.kind for d in checked.docs)
    assert kinds == ["feed"], kinds  # only alice's feed changed since bob's bundle
    assert sum(d.changes for d in checked.docs) == 1
    assert delta.stat().st_size < full.stat().st_size
    r = import_bundle(bob, [delta])
    assert r.news.posts == 1 and r.report.pending == 0


def test_out_of_order_bundles_converge(pair, tmp_path: Path) -> None:
    alice, bob, c = pair
    from p2p.exchange import inventory

    base = export_file(alice, [c], tmp_path / "1.p2p")
    inv = inventory(alice, [c.id])
    content.post(alice, c, "later post")
    later = export_file(alice, [c], tmp_path / "2.p2p", peer=inv)
    r2 = import_bundle(bob, [later])
    assert r2.report.pending >= 1
    cb = cm.resolve(bob, c.hex)
    assert all(p["text"] != "later post" for p in feed.all_posts(bob, cb))
    import_bundle(bob, [base])
    assert feed.thread(bob, cb) == feed.thread(alice, c)


def test_verify_needs_no_identity(pair, tmp_path: Path) -> None:
    alice, _bob, c = pair
    path = export_file(alice, [c], tmp_path / "a.p2p")
    result = verify_bundle([path])
    assert result.ok
    data = result.as_json()
    assert data["exporter"] == alice.public_key.hex()
    assert data["posts"] == 2
    assert [a["name"] for a in data["authors"]] == ["Alice"]


@pytest.mark.parametrize("cut", [1, 8, 30, 100, 0.5, -1, -40])
def test_truncated_bundle_changes_nothing(pair, tmp_path: Path, cut) -> None:
    alice, bob, c = pair
    data = export_file(alice, [c], tmp_path / "a.p2p").read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else (cut if cut > 0 else len(data) + cut)
    bad = tmp_path / "cut.p2p"
    bad.write_bytes(data[:n])
    before = dump(bob)
    with pytest.raises(BundleError):
        import_bundle(bob, [bad])
    assert dump(bob) == before


def test_bit_flips_change_nothing(pair, tmp_path: Path) -> None:
    alice, bob, c = pair
    data = export_file(alice, [c], tmp_path / "a.p2p").read_bytes()
    before = dump(bob)
    step = max(1, len(data) // 60)
    for i in range(0, len(data), step):
        flipped = bytearray(data)
        flipped[i] ^= 0x10
        bad = tmp_path / "flip.p2p"
        bad.write_bytes(bytes(flipped))
        with pytest.raises(BundleError):
            import_bundle(bob, [bad])
        assert dump(bob) == before, f"flip at {i} changed the store"


def test_not_bundles(pair, tmp_path: Path) -> None:
    _alice, bob, _c = pair
    empty = tmp_path / "empty.p2p"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.p2p"
    garbage.write_bytes(os.urandom(5000))
    folder = tmp_path / "folder"
    folder.mkdir()
    before = dump(bob)
    for path in (empty, garbage, folder):
        with pytest.raises(NotABundle):
            import_bundle(bob, [path])
    assert dump(bob) == before


def test_community_not_joined_is_skipped(pair, tmp_path: Path) -> None:
    alice, _bob, _c = pair
    other = cm.create(alice, "Elsewhere")
    content.post(alice, other, "not for carol")
    carol = make_home(tmp_path / "carol", "Carol")
    path = export_file(alice, [other], tmp_path / "o.p2p")
    before = dump(carol)
    r = import_bundle(carol, [path])
    assert r.skipped_communities == [other.hex]
    assert r.report.applied == 0
    kept = ("bundles_seen", "peer", "blobs.swept")  # bookkeeping, not content
    assert [x for x in dump(carol) if not any(k in x for k in kept)] == [
        x for x in before if not any(k in x for k in kept)
    ]


def test_private_bundle_members_only(tmp_path: Path) -> None:
    alice = make_home(tmp_path / "alice", "Alice")
    bob = make_home(tmp_path / "bob", "Bob")
    eve = make_home(tmp_path / "eve", "Eve")
    c = cm.create(alice, "Secret circle", private=True)
    content.post(alice, c, "meeting at the usual place")
    invites.join(bob, invites.write(alice, c))
    path = export_file(alice, [c], tmp_path / "p.p2p")
    raw = path.read_bytes()
    assert raw.startswith(b"age-encryption.org/v1\n")
    assert b"Secret circle" not in raw and c.id not in raw and alice.public_key not in raw
    r = import_bundle(bob, [path])
    assert r.news.posts == 1
    before = dump(eve)
    with pytest.raises(WrongKey):
        import_bundle(eve, [path])
    assert dump(eve) == before


def test_age_cli_decrypts_private_bundle(tmp_path: Path) -> None:
    if not shutil.which("age"):
        pytest.skip("the age command-line tool is not installed (apt-get install age)")
    alice = make_home(tmp_path / "alice", "Alice")
    c = cm.create(alice, "Secret circle", private=True)
    content.post(alice, c, "hello")
    path = export_file(alice, [c], tmp_path / "p.p2p")
    key = tmp_path / "key.txt"
    key.write_text(c.secret + "\n")
    out = subprocess.run(
        ["age", "-d", "-i", str(key), str(path)], capture_output=True, check=True, timeout=30
    ).stdout
    from p2p.bundle.container import MAGIC

    assert out.startswith(MAGIC)


def test_usb_drop_box(tmp_path: Path) -> None:
    stick = tmp_path / "stick"
    stick.mkdir()
    alice = make_home(tmp_path / "alice", "Alice")
    bob = make_home(tmp_path / "bob", "Bob")
    carol = make_home(tmp_path / "carol", "Carol")
    c = cm.create(alice, "Village")
    secret = cm.create(alice, "Inner circle", private=True)
    for h in (bob, carol):
        invites.join(h, invites.write(alice, c))
    invites.join(bob, invites.write(alice, secret))
    content.post(alice, c, "from alice")
    content.post(alice, secret, "private from alice")

    r1 = usb_sync(alice, stick)
    assert len(r1.written) == 2  # open + private: never two domains in one file
    names = sorted(p.name for p in stick.iterdir())
    assert all("alice" not in n.lower() and "village" not in n.lower() for n in names)
    assert not [n for n in names if n.startswith(".")]  # no temporary files left

    content.post(bob, cm.resolve(bob, c.hex), "from bob")
    r2 = usb_sync(bob, stick)
    assert len(r2.imported) == 2
    r3 = usb_sync(carol, stick)
    assert len(r3.unreadable) == 2  # alice's and bob's private bundles are not for carol
    cc = cm.resolve(carol, c.hex)
    texts = sorted(p["text"] for p in feed.all_posts(carol, cc))
    assert texts == ["from alice", "from bob"]
    # a second run imports nothing new and skips its own
    r4 = usb_sync(carol, stick)
    assert r4.imported == [] and r4.own >= 1

    # prune: alice ends with one bundle per domain on the stick
    content.post(alice, c, "another from alice")
    usb_sync(alice, stick)
    before = len(list(stick.iterdir()))
    r5 = usb_sync(alice, stick, prune=True)
    assert r5.pruned
    assert len(list(stick.iterdir())) < before + len(r5.written)


def test_split_into_parts_imports_as_one(pair, tmp_path: Path) -> None:
    alice, bob, c = pair
    for i in range(30):
        content.post(alice, c, f"post number {i} " + "x" * 200)
    stick = tmp_path / "stick"
    stick.mkdir()
    r = usb_sync(alice, stick, max_file_size=2048)
    files = r.written[0][0]
    assert len(files) > 1
    got = usb_sync(bob, stick)
    assert len(got.imported) == 1
    assert len(feed.all_posts(bob, cm.resolve(bob, c.hex))) == 32


def test_stick_full_writes_nothing(pair, tmp_path: Path, monkeypatch) -> None:
    alice, _bob, _c = pair
    stick = tmp_path / "stick"
    stick.mkdir()
    import shutil as sh

    real = sh.disk_usage

    def tiny(path):  # noqa: ANN001, ANN202
        usage = real(path)
        return type(usage)(usage.total, usage.total - 10, 10)

    monkeypatch.setattr("shutil.disk_usage", tiny)
    r = usb_sync(alice, stick)
    assert isinstance(r.problem, StickFull)
    assert list(stick.iterdir()) == []


# --- golden vectors -----------------------------------------------------------


def _manifest() -> dict:
    """Every vector of every container version: version 1 at the top of the
    folder, version 2 in v2/ (named "v2/NAME", its files and keys there)."""
    out = {}
    for folder, prefix in ((VECTORS, ""), (VECTORS / "v2", "v2/")):
        if (folder / "manifest.json").exists():
            for name, spec in json.loads((folder / "manifest.json").read_text()).items():
                fix = ("file", "key", "invite")
                spec = {**spec, **{k: prefix + spec[k] for k in fix if k in spec}}
                out[prefix + name] = {"file": prefix + name, **spec}
    return out


@pytest.mark.parametrize(
    "name", sorted(_manifest()) if (VECTORS / "manifest.json").exists() else []
)
def test_vectors(name: str, tmp_path: Path) -> None:
    from pyrage import x25519

    from p2p import errors
    from p2p.bundle.source import Keys

    spec = _manifest()[name]
    path = VECTORS / spec.get("file", name)
    keys = Keys()
    if "key" in spec:
        keys = Keys([x25519.Identity.from_str((VECTORS / spec["key"]).read_text().strip())])
    if spec["expect"] == "valid":
        result = verify_bundle([path], keys)
        assert result.ok, result.faults
        assert result.as_json()["posts"] == spec["posts"]
        home = make_home(tmp_path / "h", "Reader")
        invites.join(home, (VECTORS / spec["invite"]).read_bytes())
        r = import_bundle(home, [path])
        assert r.report.rejected == []
        assert r.news.posts == spec["posts"]
        return
    if spec["error"] in ("ForgedChange", "BadAttachment"):  # listed as faults, not raised
        result = verify_bundle([path], keys)
        assert not result.ok
        return
    expected = getattr(errors, spec["error"])
    with pytest.raises(expected):
        verify_bundle([path], keys)


# --- CLI ----------------------------------------------------------------------


def test_cli_export_verify_import(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(a, "init", "--no-passphrase", "--name", "Alice").returncode == 0
    assert cli(b, "init", "--no-passphrase", "--name", "Bob").returncode == 0
    cid = json.loads(cli(a, "community", "create", "Village", "--json").stdout)["id"]
    assert cli(a, "post", cid, "hello from alice").returncode == 0
    assert cli(a, "community", "invite", cid, "--out", str(tmp_path / "inv")).returncode == 0
    assert cli(b, "community", "join", str(tmp_path / "inv")).returncode == 0
    out = tmp_path / "x.p2p"
    assert cli(a, "export", "--out", str(out)).returncode == 0
    v = cli(tmp_path / "nobody", "verify", str(out), "--json")
    assert v.returncode == 0, v.stderr
    assert json.loads(v.stdout)["ok"] is True
    imp = cli(b, "import", str(out), "--json")
    assert imp.returncode == 0, imp.stderr
    assert json.loads(imp.stdout)[0]["new_posts"] == 1
    posts = json.loads(cli(b, "feed", cid, "--json").stdout)
    assert [p["text"] for p in posts] == ["hello from alice"]

    cut = tmp_path / "cut.p2p"
    cut.write_bytes(out.read_bytes()[:-20])
    bad = cli(b, "import", str(cut))
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and "cut short" in bad.stderr
    bad_verify = cli(b, "verify", str(cut))
    assert bad_verify.returncode == 1


def test_cli_import_of_forged_change_reports_and_fails(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert cli(home, "init", "--no-passphrase").returncode == 0
    assert cli(home, "community", "join", str(VECTORS / "valid-invite.p2p")).returncode == 0
    res = cli(home, "import", str(VECTORS / "forged-change.p2p"))
    assert res.returncode == 1
    assert "only its owner may write this feed" in res.stdout
    assert res.stderr.startswith("error: 1 change was rejected")
    honest = json.loads(cli(home, "feed", _community_of_vectors(), "--json").stdout)
    assert len(honest) == 4 and "forged" not in json.dumps(honest)


def _community_of_vectors() -> str:
    from p2p.bundle.verify import verify_bundle

    return next(iter(verify_bundle([VECTORS / "valid.p2p"]).communities)).hex()


def test_cli_passphrase_bundle(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for h in (a, b):
        assert cli(h, "init", "--no-passphrase").returncode == 0
    cid = json.loads(cli(a, "community", "create", "Village", "--json").stdout)["id"]
    assert cli(a, "post", cid, "for the passphrase holders").returncode == 0
    assert cli(a, "community", "invite", cid, "--out", str(tmp_path / "inv")).returncode == 0
    assert cli(b, "community", "join", str(tmp_path / "inv")).returncode == 0
    out = tmp_path / "pp.p2p"
    made = cli(a, "export", "--passphrase", "--out", str(out), P2P_BUNDLE_PASSPHRASE="owl")
    assert made.returncode == 0, made.stderr
    assert b"for the passphrase" not in out.read_bytes()
    assert bytes.fromhex(cid) not in out.read_bytes()
    before = dump_file(b)
    wrong = {"P2P_BUNDLE_PASSPHRASE": "cat"}
    for env, fragment in (({}, "P2P_BUNDLE_PASSPHRASE"), (wrong, "passphrase does not open")):
        res = cli(b, "import", str(out), **env)
        assert res.returncode == 1 and fragment in res.stderr, res.stderr
        assert res.stderr.strip().count("\n") == 0
    assert dump_file(b) == before
    v = cli(tmp_path / "nobody", "verify", str(out), P2P_BUNDLE_PASSPHRASE="owl")
    assert v.returncode == 0 and "encrypted" in v.stdout, v.stderr
    res = cli(b, "import", str(out), P2P_BUNDLE_PASSPHRASE="owl")  # a home full of other keys
    assert res.returncode == 0, res.stderr
    posts = json.loads(cli(b, "feed", cid, "--json").stdout)
    assert [p["text"] for p in posts] == ["for the passphrase holders"]


def test_cli_export_since_an_earlier_bundle(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for h in (a, b):
        assert cli(h, "init", "--no-passphrase").returncode == 0
    cid = json.loads(cli(a, "community", "create", "Village", "--json").stdout)["id"]
    assert cli(a, "community", "invite", cid, "--out", str(tmp_path / "inv")).returncode == 0
    assert cli(b, "community", "join", str(tmp_path / "inv")).returncode == 0
    assert cli(a, "post", cid, "monday").returncode == 0
    first = tmp_path / "monday.p2p"
    assert cli(a, "export", "--out", str(first)).returncode == 0
    assert cli(a, "post", cid, "tuesday").returncode == 0
    second = tmp_path / "tuesday.p2p"
    assert cli(a, "export", "--since", str(first), "--out", str(second)).returncode == 0
    assert second.stat().st_size < first.stat().st_size
    assert b"tuesday" in second.read_bytes() and b"monday" not in second.read_bytes()
    nothing = cli(a, "export", "--since", str(second), "--out", str(tmp_path / "none.p2p"))
    assert nothing.returncode == 0 and "Nothing to export" in nothing.stdout
    assert not (tmp_path / "none.p2p").exists()
    for f in (second, first):  # out of order is fine
        assert cli(b, "import", str(f)).returncode == 0
    texts = [p["text"] for p in json.loads(cli(b, "feed", cid, "--json").stdout)]
    assert texts == ["monday", "tuesday"]
    cut = tmp_path / "cut.p2p"
    cut.write_bytes(first.read_bytes()[:-10])
    bad = cli(a, "export", "--since", str(cut), "--out", str(tmp_path / "x.p2p"))
    assert bad.returncode == 1 and "cut short" in bad.stderr


def dump_file(home: Path) -> list[str]:
    """Every row of a home's store, read from outside the CLI."""
    con = sqlite3.connect(home / "p2p.db")
    try:
        return list(con.iterdump())
    finally:
        con.close()


def test_have_hints_spare_a_peer_that_is_ahead_its_whole_document(tmp_path: Path) -> None:
    """Alice is ahead on her own feed and Bob has never seen her newest heads:
    the older hashes her bundle lists let Bob send only a few changes, not the
    whole feed, when he exports for her."""
    from p2p.accept import from_record
    from p2p.bundle.container import write_bundle
    from p2p.bundle.records import community_record, inventory_records
    from p2p.exchange import have_hints, inventory, known_by, records_for

    alice, bob = make_home(tmp_path / "alice", "Alice"), make_home(tmp_path / "bob", "Bob")
    c = cm.create(alice, "Village")
    invites.join(bob, invites.write(alice, c))
    for i in range(20):
        content.post(alice, c, f"post {i}")
    first = tmp_path / "first.p2p"
    with ex.scratch_dir(alice) as s:
        ex.place(ex.build(alice, ex.domains([c])[0], Path(s)), first)
    assert import_bundle(bob, [first]).news.posts == 20
    for i in range(5):
        content.post(alice, c, f"later {i}")
    # a bundle from alice with her inventory but none of the new posts (as one
    # written for someone who already had them)
    ids = [c.id]
    hints = have_hints(alice, ids)
    inv_only = tmp_path / "inv.p2p"
    with inv_only.open("wb") as fh:
        records = [community_record(alice, c), *inventory_records(inventory(alice, ids), hints)]
        write_bundle(fh, alice.identity, records, 0)
    import_bundle(bob, [inv_only])
    feed_id = content.feed_ref(c, alice.public_key).id
    back = [r for r in records_for(bob, known_by(bob, alice.public_key)) if r["doc"] == feed_id]
    # alice listed hashes 1, 2, 4, 8... back from her newest; bob holds the one
    # 8 back, so at most the few changes after it go, never the whole feed
    assert back == [] or (back[0]["enc"] != "save" and len(from_record(back[0]).changes) <= 8)
    alice.close()
    bob.close()
