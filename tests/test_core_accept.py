"""The acceptance path against real forgeries: real keys, real Automerge changes.

Each forged input is built for real (a change made by one key and claimed for
another's document, a signature moved to another document...), handed to the
acceptance path, and must be rejected with a reason while the store stays
byte-for-byte the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from automerge.core import ROOT, Document, ScalarType

from p2p import community as cm
from p2p import content, exchange, feed, invites, signing
from p2p.accept import Incoming, from_record
from p2p.chunk import RawChange
from p2p.docref import COMMUNITY, FEED, DocRef
from p2p.documents import as_raw
from p2p.errors import NotAllowed
from p2p.home import Home
from tests.helpers import dump, make_home, share


@pytest.fixture
def world(tmp_path: Path):
    """Alice owns a community; Mallory and Carol are members; all hold everything."""
    alice = make_home(tmp_path / "alice", "Alice")
    mallory = make_home(tmp_path / "mallory", "Mallory")
    carol = make_home(tmp_path / "carol", "Carol")
    c = cm.create(alice, "Village")
    for h in (mallory, carol):
        invites.join(h, invites.write(alice, c))
    content.post(alice, c, "alice's first post")
    content.post(mallory, cm.resolve(mallory, c.hex), "mallory's post")
    for a in (alice, mallory, carol):
        for b in (alice, mallory, carol):
            if a is not b:
                share(a, b)
    yield alice, mallory, carol, c
    for h in (alice, mallory, carol):
        h.close()


def forge(author: Home, ref: DocRef, edit, signer: Home | None = None) -> tuple[RawChange, tuple]:
    """A real change by `author` on top of `author`'s copy of `ref`, signed by `signer`."""
    doc = Document.load(author.docs.data(ref.id))
    doc.set_actor(author.public_key)
    with doc.transaction() as tx:
        edit(doc, tx)
    change = as_raw(doc.get_last_local_change())
    sig = signing.sign((signer or author).identity, ref.id, change.hash)
    return change, sig


def incoming(ref: DocRef, changes: list[RawChange], sigs: list, claimed: bytes | None = None):
    return Incoming(ref, claimed or ref.id, changes, sigs)


def reasons(report) -> list[str]:
    return [r.reason for r in report.rejected]


def test_member_writing_into_anothers_feed(world) -> None:
    alice, mallory, carol, c = world
    ref = DocRef(c.id, FEED, alice.public_key)
    change, sig = forge(mallory, ref, lambda d, tx: tx.put(ROOT, "x", ScalarType.Str, "forged"))
    before = dump(carol)
    report = carol.acceptor().accept([incoming(ref, [change], [sig])])
    assert reasons(report) == ["only its owner may write this feed"]
    assert report.applied == 0
    assert dump(carol) == before


def test_change_by_alice_actor_signed_by_mallory(world) -> None:
    alice, mallory, carol, c = world
    ref = DocRef(c.id, FEED, alice.public_key)
    # mallory fabricates a change that claims alice as its actor, signs it herself
    change, sig = forge(alice, ref, lambda d, tx: tx.put(ROOT, "x", ScalarType.Str, "f"), mallory)
    before = dump(carol)
    report = carol.acceptor().accept([incoming(ref, [change], [sig])])
    assert "signature does not verify" in reasons(report)
    assert "not signed by its author" in reasons(report)
    assert dump(carol) == before


def test_member_signing_a_moderation_action(world) -> None:
    alice, mallory, carol, c = world
    ref = DocRef(c.id, COMMUNITY, alice.public_key)
    post_id = feed.all_posts(carol, cm.resolve(carol, c.hex))[0]["id"]

    def hide(doc, tx):
        hidden = doc.get(ROOT, "hidden")[1]
        tx.put(hidden, post_id, ScalarType.Int, 1)

    change, sig = forge(mallory, ref, hide)
    before = dump(carol)
    report = carol.acceptor().accept([incoming(ref, [change], [sig])])
    assert reasons(report) == ["only the owner and moderators may change community settings"]
    assert dump(carol) == before
    # and the library refuses to even make it
    with pytest.raises(NotAllowed):
        cm.hide(mallory, cm.resolve(mallory, c.hex), post_id)


def test_promoted_moderator_can_hide_and_third_peer_accepts(world) -> None:
    alice, mallory, carol, c = world
    cm.set_role(alice, c, carol.public_key, "moderator")
    share(alice, carol)
    cc = cm.resolve(carol, c.hex)
    target = next(p for p in feed.all_posts(carol, cc) if p["text"] == "mallory's post")
    cm.hide(carol, cc, target["id"])
    report = mallory.acceptor().accept(
        [from_record(r) for r in exchange.records_for(carol, exchange.inventory(mallory))]
    )
    assert report.rejected == []
    mc = cm.resolve(mallory, c.hex)
    assert target["id"] not in [p["id"] for p in feed.all_posts(mallory, mc, moderated=True)]
    assert target["id"] in [p["id"] for p in feed.all_posts(mallory, mc)]  # data kept


def test_demoted_moderator_loses_the_right(world) -> None:
    alice, mallory, carol, c = world
    cm.set_role(alice, c, carol.public_key, "moderator")
    cm.set_role(alice, c, carol.public_key, "member")
    share(alice, carol)
    share(alice, mallory)
    ref = DocRef(c.id, COMMUNITY, alice.public_key)
    change, sig = forge(
        carol, ref, lambda d, tx: tx.put(d.get(ROOT, "hidden")[1], "x", ScalarType.Int, 1)
    )
    report = mallory.acceptor().accept([incoming(ref, [change], [sig])])
    assert reasons(report) == ["only the owner and moderators may change community settings"]
    assert report.pending == 0


def test_tampered_change_is_rejected_without_crash(world) -> None:
    alice, _mallory, carol, c = world
    content.post(alice, c, "new one")
    record = exchange.delta_record(
        alice,
        DocRef(c.id, FEED, alice.public_key),
        carol.docs.heads(DocRef(c.id, FEED, alice.public_key).id),
    )
    data = bytearray(record["data"])
    data[-3] ^= 0x40
    record["data"] = bytes(data)
    before = dump(carol)
    with pytest.raises(ValueError, match="bad change data"):
        from_record(record)
    # the same bytes reaching the acceptor as a parsed change (checksum bypassed) fail too
    assert dump(carol) == before


def test_valid_signature_over_a_different_document(world) -> None:
    alice, _mallory, carol, c = world
    other = cm.create(alice, "Elsewhere")
    content.post(alice, other, "x")
    ref = DocRef(c.id, FEED, alice.public_key)
    change, _ = forge(alice, ref, lambda d, tx: tx.put(ROOT, "y", ScalarType.Str, "moved"))
    wrong_doc = DocRef(other.id, FEED, alice.public_key).id
    moved = signing.sign(alice.identity, wrong_doc, change.hash)  # alice's real signature
    before = dump(carol)
    report = carol.acceptor().accept([incoming(ref, [change], [moved])])
    assert "signature does not verify" in reasons(report)
    assert dump(carol) == before


def test_document_id_not_matching_its_description(world) -> None:
    alice, mallory, carol, c = world
    ref = DocRef(c.id, FEED, mallory.public_key)
    change, sig = forge(mallory, ref, lambda d, tx: tx.put(ROOT, "z", ScalarType.Str, "z"))
    alices = DocRef(c.id, FEED, alice.public_key).id
    before = dump(carol)
    report = carol.acceptor().accept([incoming(ref, [change], [sig], claimed=alices)])
    assert reasons(report) == ["document id does not match its community, kind and owner"]
    assert dump(carol) == before


def test_community_not_joined(world, tmp_path: Path) -> None:
    alice, *_ = world
    dave = make_home(tmp_path / "dave", "Dave")
    before = dump(dave)
    report = dave.acceptor().accept([from_record(r) for r in exchange.records_for(alice, None)])
    assert set(reasons(report)) == {"document of a community this store has not joined"}
    assert dump(dave) == before


def test_replay_is_idempotent(world) -> None:
    alice, _mallory, carol, c = world
    records = list(exchange.records_for(alice, None))
    before = dump(carol)
    report = carol.acceptor().accept([from_record(r) for r in records])
    assert report.applied == 0 and report.already > 0 and report.rejected == []
    assert dump(carol) == before
    assert len(feed.all_posts(carol, cm.resolve(carol, c.hex))) == 2


def test_mixed_batch_applies_good_rejects_bad(world) -> None:
    alice, mallory, carol, c = world
    content.post(alice, c, "good news")
    good = exchange.records_for(alice, exchange.inventory(carol))
    ref = DocRef(c.id, FEED, alice.public_key)
    bad, sig = forge(
        mallory,
        DocRef(c.id, FEED, alice.public_key),
        lambda d, tx: tx.put(ROOT, "b", ScalarType.Str, "b"),
    )
    report = carol.acceptor().accept([*(from_record(r) for r in good), incoming(ref, [bad], [sig])])
    assert report.applied == 1
    assert reasons(report) == ["only its owner may write this feed"]
    texts = [p["text"] for p in feed.all_posts(carol, cm.resolve(carol, c.hex))]
    assert "good news" in texts


def test_out_of_order_changes_wait_then_apply(world) -> None:
    alice, _mallory, carol, c = world
    ref = DocRef(c.id, FEED, alice.public_key)
    base = carol.docs.heads(ref.id)
    content.post(alice, c, "second")
    mid = alice.docs.heads(ref.id)
    content.post(alice, c, "third")
    first = exchange.delta_record(alice, ref, base)
    later = exchange.delta_record(alice, ref, mid)
    report = carol.acceptor().accept([from_record(later)])
    assert report.pending == 1 and report.applied == 0
    cc = cm.resolve(carol, c.hex)
    assert "third" not in [p["text"] for p in feed.all_posts(carol, cc)]
    report = carol.acceptor().accept([from_record(first)])
    assert report.applied == 2 and report.pending == 0
    assert feed.thread(carol, cc) == feed.thread(alice, c)


def test_frontier_signature_covers_ancestors_only_of_same_author(world) -> None:
    alice, mallory, carol, c = world
    ref = DocRef(c.id, FEED, alice.public_key)
    base = carol.docs.heads(ref.id)
    for i in range(5):
        content.post(alice, c, f"p{i}")
    record = exchange.delta_record(alice, ref, base)
    assert len(record["sigs"]) == 1  # one signature on the newest change covers all five
    inc = from_record(record)
    assert len(inc.changes) == 5
    before = dump(carol)
    stripped = Incoming(inc.ref, inc.claimed_id, inc.changes, [])
    got = reasons(carol.acceptor().accept([stripped]))
    assert got[0] == "not signed by its author"  # the oldest; the rest build on it
    assert set(got) <= {"not signed by its author", "depends on a rejected change"}
    assert len(got) == 5
    assert dump(carol) == before
    foreign = [signing.sign(mallory.identity, ref.id, inc.changes[-1].hash)]
    other = Incoming(inc.ref, inc.claimed_id, inc.changes, foreign)
    assert "not signed by its author" in reasons(carol.acceptor().accept([other]))
    assert dump(carol) == before
    assert carol.acceptor().accept([inc]).applied == 5
