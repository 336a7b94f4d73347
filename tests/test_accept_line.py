"""A new author-owned document that arrives saved as its owner's one line of changes.

`amformat.line_of` reads, from the saved bytes alone, that every change is the
owner's and follows the one before; the acceptance path then takes the
document whole on the owner's signature on its one head, without listing its
changes. These tests check that the shortcut is sound (anything it vouches for
is what the binding lists, whatever the bytes), that it stores what the full
path stores, and that every hostile variant still goes the full way and is
judged there.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from automerge.core import ROOT, Document, ScalarType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2p import amformat, binding, content, exchange, feed, invites, signing
from p2p import community as cm
from p2p.accept import from_record
from p2p.docref import FEED, DocRef
from p2p.errors import DamagedData
from p2p.home import Home
from tests import hostile
from tests.helpers import make_home


@pytest.fixture
def pair(tmp_path: Path):
    """Alice wrote 5 posts; Bob joined her community and holds nothing of her feed."""
    alice = make_home(tmp_path / "alice", "Alice")
    bob = make_home(tmp_path / "bob", "Bob")
    c = cm.create(alice, "Village")
    invites.join(bob, invites.write(alice, c))
    for i in range(5):
        content.post(alice, c, f"post {i}")
    yield alice, bob, c
    alice.close()
    bob.close()


def feed_ref(home: Home, c: cm.Community) -> DocRef:
    return DocRef(c.id, FEED, home.public_key)


def texts(home: Home, c: cm.Community) -> list[str]:
    return sorted(p["text"] for p in feed.all_posts(home, cm.resolve(home, c.hex)))


def listed(data: bytes) -> list:
    return binding.changes(binding.load(data))


def test_a_stored_feed_is_its_owners_line(pair) -> None:
    alice, _bob, c = pair
    ref = feed_ref(alice, c)
    data = alice.docs.data(ref.id)
    assert data is not None
    got = amformat.line_of(data, alice.public_key)
    changes = listed(data)
    assert got == (len(changes), changes[-1].hash)
    assert [c.seq for c in changes] == list(range(1, len(changes) + 1))
    saved = binding.save(binding.load(data))  # folded into one document chunk
    assert amformat.line_of(saved, alice.public_key) == got
    assert amformat.line_of(data, b"\x07" * 32) is None  # someone else's line


def with_intruder(alice: Home, bob: Home, ref: DocRef) -> Document:
    """Alice's feed with one change by Bob on top (written with his key)."""
    doc = Document.load(alice.docs.data(ref.id))
    doc.set_actor(bob.public_key)
    with doc.transaction() as tx:
        tx.put(ROOT, "intruder", ScalarType.Str, "x")
    return doc


def test_two_authors_are_not_a_line(pair) -> None:
    alice, bob, c = pair
    doc = with_intruder(alice, bob, feed_ref(alice, c))
    assert amformat.line_of(doc.save(), alice.public_key) is None
    assert amformat.line_of(doc.save(), bob.public_key) is None


def test_fast_path_stores_what_the_full_path_stores(pair, tmp_path: Path) -> None:
    alice, bob, c = pair
    ref = feed_ref(alice, c)
    carol = make_home(tmp_path / "carol", "Carol")
    invites.join(carol, invites.write(alice, c))
    whole = exchange.full_record(alice, ref)
    changes = listed(whole["data"])
    inc = from_record(whole)
    assert inc.line == (len(changes), changes[-1].hash)
    report = bob.acceptor().accept([inc])
    assert report.applied == len(changes) and not report.rejected and report.new_docs == [ref]
    # Carol receives the same changes one by one: the full path
    sigs = [tuple(s) for s in whole["sigs"]]
    slow = carol.acceptor().accept([from_record(hostile.record(ref, changes, sigs))])
    assert slow.applied == report.applied and not slow.rejected
    for home in (bob, carol):
        assert home.docs.heads(ref.id) == [changes[-1].hash]
        assert home.docs.tip(ref) == (changes[-1].hash, len(changes))
        assert texts(home, c) == [f"post {i}" for i in range(5)]
    rows = "SELECT hash, signer, sig FROM sigs WHERE doc = ? ORDER BY hash"
    assert (
        bob.store.db.execute(rows, (ref.id,)).fetchall()
        == carol.store.db.execute(rows, (ref.id,)).fetchall()
    )
    # the next post takes the owner's-next path from the tip the line left
    content.post(alice, c, "later")
    news = [from_record(r) for r in exchange.records_for(alice, exchange.inventory(bob))]
    assert bob.acceptor().accept([i for i in news if i.ref == ref]).applied == 1
    assert "later" in texts(bob, c)
    assert bob.docs.tip(ref) == (alice.docs.heads(ref.id)[0], len(changes) + 1)
    carol.close()


def test_head_signed_by_someone_else_is_not_taken(pair) -> None:
    alice, bob, c = pair
    ref = feed_ref(alice, c)
    whole = exchange.full_record(alice, ref)
    head = whole["sigs"][0][0]
    forged = signing.sign(bob.identity, ref.id, head)  # a valid signature, wrong signer
    report = bob.acceptor().accept([from_record({**whole, "sigs": [list(forged)]})])
    assert report.applied == 0 and texts(bob, c) == []


def test_bad_signature_on_the_head_is_refused(pair) -> None:
    alice, bob, c = pair
    ref = feed_ref(alice, c)
    whole = exchange.full_record(alice, ref)
    h, who, sig = whole["sigs"][0]
    broken = bytes([sig[0] ^ 1]) + sig[1:]
    report = bob.acceptor().accept([from_record({**whole, "sigs": [[h, who, broken]]})])
    assert report.applied == 0 and texts(bob, c) == []
    assert any("signature does not verify" in r.reason for r in report.rejected)


def test_no_signature_leaves_nothing(pair) -> None:
    alice, bob, c = pair
    whole = exchange.full_record(alice, feed_ref(alice, c))
    report = bob.acceptor().accept([from_record({**whole, "sigs": []})])
    assert report.applied == 0 and texts(bob, c) == []


def test_an_intruders_change_signed_by_the_owner_is_refused(pair) -> None:
    """The owner signs a head that sits on a change by someone else: not a line, and
    the full path refuses the intruder's change (and what depends on it)."""
    alice, bob, c = pair
    ref = feed_ref(alice, c)
    doc = with_intruder(alice, bob, ref)
    doc.set_actor(alice.public_key)
    with doc.transaction() as tx:
        tx.put(ROOT, "after", ScalarType.Str, "y")
    data = doc.save()
    (head,) = doc.get_heads()
    sig = signing.sign(alice.identity, ref.id, head)
    inc = from_record(hostile.save_record(ref, data, [sig]))
    assert inc.line is None
    report = bob.acceptor().accept([inc])
    reasons = {r.reason for r in report.rejected}
    assert reasons == {"not signed by its author", "depends on a rejected change"}
    assert texts(bob, c) == [f"post {i}" for i in range(5)]  # hers, vouched by her head
    stored = bob.docs.load(ref.id)
    assert stored is None or stored.get(ROOT, "intruder") is None


def _with_checksum(data: bytes) -> bytes:
    """A document chunk whose checksum matches its (altered) contents."""
    length, body = amformat._uleb(memoryview(data), 9, len(data))
    end = body + length
    return data[:4] + hashlib.sha256(data[8:end]).digest()[:4] + data[8:]


@pytest.fixture(scope="module")
def saved_line() -> tuple[bytes, bytes]:
    actor = b"\x11" * 32
    doc = Document(actor_id=actor)
    for i in range(12):
        with doc.transaction() as tx:
            tx.put(ROOT, f"k{i % 5}", ScalarType.Str, f"value {i}")
    return doc.save(), actor


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=4))
def test_line_of_never_vouches_for_what_the_binding_disagrees_with(saved_line, edits) -> None:
    """Soundness, whatever bytes arrive: when `line_of` says "n changes, this head" and
    the binding loads the bytes, the binding lists exactly that line."""
    data, actor = saved_line
    mutated = bytearray(data)
    for where, value in edits:
        mutated[10 + where % (len(data) - 10)] = value
    altered = _with_checksum(bytes(mutated))
    got = amformat.line_of(altered, actor)  # never raises
    if got is None:
        return
    try:
        changes = listed(altered)
    except DamagedData:
        return  # the binding refuses it: so does the acceptance path
    assert [c.actor for c in changes] == [actor] * got[0]
    assert [c.seq for c in changes] == list(range(1, got[0] + 1))
    assert all(c.deps == (p.hash,) for p, c in zip(changes, changes[1:], strict=False))
    assert changes[-1].hash == got[1]


@given(st.binary(max_size=300))
def test_line_of_takes_any_bytes(data: bytes) -> None:
    assert amformat.line_of(data, b"\x11" * 32) is None or data[:4] == amformat.MAGIC


def _bundle(home: Home, c: cm.Community, out: Path) -> Path:
    from p2p.bundle import export as ex

    with ex.scratch_dir(home) as s:
        built = ex.build(home, ex.domains([c])[0], Path(s))
        assert built is not None
        Path(built.path).replace(out)
    return out


def test_verify_counts_a_line_without_listing_it(pair, tmp_path: Path) -> None:
    from p2p.bundle.verify import verify_bundle

    alice, _bob, c = pair
    ref = feed_ref(alice, c)
    bundle = _bundle(alice, c, tmp_path / "v.p2p")
    result = verify_bundle([bundle])
    assert not result.faults
    (doc,) = [d for d in result.docs if d.doc == ref.id]
    assert (doc.changes, doc.posts, doc.unchecked) == (len(listed(alice.docs.data(ref.id))), 5, 0)


def test_verify_reports_a_line_whose_head_signature_is_forged(pair, tmp_path: Path) -> None:
    from p2p.bundle.verify import verify_bundle

    alice, bob, c = pair
    ref = feed_ref(alice, c)
    bundle = _bundle(alice, c, tmp_path / "v.p2p")
    whole = exchange.full_record(alice, ref)
    h, who, sig = whole["sigs"][0]
    forged = {**whole, "sigs": [[h, who, bytes([sig[0] ^ 1]) + sig[1:]]]}
    bad = tmp_path / "forged.p2p"
    ours = lambda r: r.get("doc") == ref.id  # noqa: E731
    hostile.doctor_bundle(bundle, bad, bob.identity, [forged], drop=ours)
    result = verify_bundle([bad])
    assert any("signature does not verify" in f for f in result.faults)


@pytest.mark.parametrize(
    "variant", ["honest", "other signer", "bad signature", "unsigned", "other heads"]
)
def test_vouched_bytes_are_judged_as_loaded_ones(pair, tmp_path: Path, variant: str) -> None:
    """Bytes our prefetch process loaded (`from_record(vouched=heads)`, not loaded here:
    `binding.Vouched`) are judged exactly as bytes loaded here, hostile ones included."""
    alice, bob, c = pair
    carol = make_home(tmp_path / "carol", "Carol")
    invites.join(carol, invites.write(alice, c))
    ref = feed_ref(alice, c)
    whole = exchange.full_record(alice, ref)
    head, who, sig = whole["sigs"][0]
    sigs = {
        "honest": [[head, who, sig]],
        "other signer": [list(signing.sign(bob.identity, ref.id, head))],
        "bad signature": [[head, who, bytes([sig[0] ^ 1]) + sig[1:]]],
        "unsigned": [],
        "other heads": [[head, who, sig]],
    }[variant]
    record = {**whole, "sigs": sigs}
    heads = [b"\x01" * 32] if variant == "other heads" else [head]
    vouched = from_record(record, priced=True, vouched=heads)
    assert isinstance(vouched.loaded, binding.Vouched) == (variant != "other heads")
    got, want = bob.acceptor().accept([vouched]), carol.acceptor().accept([from_record(record)])
    assert got.applied == want.applied == (5 if variant in ("honest", "other heads") else 0)
    assert sorted(r.reason for r in got.rejected) == sorted(r.reason for r in want.rejected)
    assert texts(bob, c) == texts(carol, c)
    assert bob.docs.heads(ref.id) == carol.docs.heads(ref.id)
    carol.close()
