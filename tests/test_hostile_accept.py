"""Validly signed but hostile changes against the real acceptance path.

Each attack is built with the attacker's own real key (tests/hostile.py); it
must be refused or confined, with a reason, while other members' content in
the same batch still arrives and the store keeps loading.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from p2p import community as cm
from p2p import content, exchange, feed, invites
from p2p.accept import Incoming, from_record
from p2p.docref import COMMUNITY, FEED, DocRef
from tests import hostile
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


def texts(home, c) -> list[str]:
    return sorted(p["text"] for p in feed.all_posts(home, cm.resolve(home, c.hex)))


def honest_news(alice, carol, c) -> list[Incoming]:
    content.post(alice, c, "honest news")
    return [from_record(r) for r in exchange.records_for(alice, exchange.inventory(carol))]


def still_works(home, c) -> None:
    """Every document loads and exports again."""
    for doc_id in home.docs.ids():
        home.docs.forget(doc_id)
        assert home.docs.load(doc_id) is not None
    assert list(exchange.records_for(home, None))
    feed.thread(home, cm.resolve(home, c.hex))


@pytest.mark.parametrize(
    "attack, reason",
    [
        (hostile.gap, "sequence gap"),
        (hostile.no_prev_dep, "does not build on its author's previous change"),
        (hostile.garbage_body, "unable to parse chunk"),
        (hostile.truncated, "unable to parse chunk"),
    ],
)
def test_malformed_signed_change_is_refused_alone(world, attack, reason) -> None:
    alice, mallory, carol, c = world
    ref = DocRef(c.id, FEED, mallory.public_key)
    changes, sigs = attack(mallory, ref)
    good = honest_news(alice, carol, c)
    mal_before = carol.docs.heads(ref.id)
    report = carol.acceptor().accept([*good, Incoming(ref, ref.id, changes, sigs)])
    assert len(report.rejected) == 1 and reason in report.rejected[0].reason
    assert report.applied == 1
    assert "honest news" in texts(carol, c)
    assert carol.docs.heads(ref.id) == mal_before
    still_works(carol, c)


def test_a_change_that_would_save_unloadable_is_refused(world) -> None:
    """The header claims no dependencies on its author's first change: the
    binding loads it once, but its save would never load again."""
    _alice, mallory, carol, c = world
    ref = DocRef(c.id, FEED, mallory.public_key)
    changes, sigs = hostile.no_prev_dep(mallory, ref)
    before = dump(carol)
    report = carol.acceptor().accept([Incoming(ref, ref.id, changes, sigs)])
    assert report.applied == 0 and len(report.rejected) == 1
    assert dump(carol) == before


def test_fork_resolves_the_same_whatever_the_order(world, tmp_path) -> None:
    alice, mallory, carol, c = world
    ref = DocRef(c.id, FEED, mallory.public_key)
    (a, sa), (b, sb) = hostile.fork_pair(mallory, ref)
    dave = make_home(tmp_path / "dave", "Dave")
    invites.join(dave, invites.write(alice, c))
    share(alice, dave)
    share(mallory, dave)
    # carol meets A first, then B; dave meets B first, then A
    r1 = carol.acceptor().accept([Incoming(ref, ref.id, a, sa)])
    r2 = carol.acceptor().accept([Incoming(ref, ref.id, b, sb)])
    r3 = dave.acceptor().accept([Incoming(ref, ref.id, b, sb)])
    r4 = dave.acceptor().accept([Incoming(ref, ref.id, a, sa)])
    assert r1.applied == 1 and r3.applied == 1
    assert carol.docs.heads(ref.id) == dave.docs.heads(ref.id)
    winner = min(a[0].hash, b[0].hash)
    assert carol.docs.heads(ref.id) == [winner]
    forks = r2.forks + r4.forks
    from p2p.identity import fingerprint

    line = r2.fork_lines[0]
    assert "'Mallory'" in line and fingerprint(mallory.public_key) in line and "\n" not in line
    assert len(forks) == 2 and all(f.actor == mallory.public_key for _, f in forks)
    # proof kept: both signed changes
    for home in (carol, dave):
        rows = home.store.db.execute("SELECT kept, dropped, proof FROM forks").fetchall()
        assert len(rows) == 1 and {rows[0][0], rows[0][1]} == {a[0].hash, b[0].hash}
    # the loser arriving again is quiet; everything keeps working
    again = carol.acceptor().accept([Incoming(ref, ref.id, a + b, sa + sb)])
    assert again.rejected == [] and again.forks == [] and again.applied == 0
    still_works(carol, c)
    still_works(dave, c)
    dave.close()


def test_fork_in_one_batch_and_honest_content_still_arrives(world) -> None:
    alice, mallory, carol, c = world
    ref = DocRef(c.id, FEED, mallory.public_key)
    (a, sa), (b, sb) = hostile.fork_pair(mallory, ref)
    good = honest_news(alice, carol, c)
    report = carol.acceptor().accept([*good, Incoming(ref, ref.id, a + b, sa + sb)])
    assert len(report.forks) == 1 and report.rejected == []
    assert report.applied == 2
    assert "honest news" in texts(carol, c)
    still_works(carol, c)


def test_restored_identity_rejoins_the_kept_branch(world, tmp_path) -> None:
    """The innocent fork: one identity on two devices, both post. Every peer
    keeps the same branch; the device whose post lost sees its own branch
    replaced and can write again on top of the kept one."""
    alice, mallory, carol, c = world
    ref = DocRef(c.id, FEED, mallory.public_key)
    (a, sa), _ = hostile.fork_pair(mallory, ref)
    content.post(mallory, cm.resolve(mallory, c.hex), "from the first device")
    mine = mallory.docs.heads(ref.id)
    report = mallory.acceptor().accept([Incoming(ref, ref.id, a, sa)])
    assert len(report.forks) == 1
    kept = mallory.docs.heads(ref.id)
    assert kept == [min(a[0].hash, mine[0])]
    # views (and their indexes) follow the rebuilt document
    assert ("from the first device" in texts(mallory, c)) == (kept == mine)
    content.post(mallory, cm.resolve(mallory, c.hex), "after the fork")
    share(mallory, carol)
    assert "after the fork" in texts(carol, c)
    still_works(mallory, c)


def test_pending_needs_a_signed_author_and_is_bounded(world, monkeypatch) -> None:
    from p2p import accept

    alice, mallory, carol, c = world
    ref = DocRef(c.id, FEED, mallory.public_key)
    links = hostile.chain(mallory, ref, 6)
    # the first change withheld: the rest wait, but only when signed by their author
    rest = [x[0] for x in links[1:]]
    unsigned = carol.acceptor().accept([Incoming(ref, ref.id, rest, [])])
    assert unsigned.pending == 0 and unsigned.rejected
    assert "not signed by its author" in unsigned.rejected[0].reason
    monkeypatch.setattr(accept, "PENDING_PER_AUTHOR", 3)
    flood = carol.acceptor().accept([Incoming(ref, ref.id, rest, [links[-1][1]])])
    assert flood.pending == 3
    assert any("too many changes" in r.reason for r in flood.rejected)
    n = carol.store.db.execute("SELECT count(*) FROM pending").fetchone()[0]
    assert n == 3
    still_works(carol, c)


def test_pending_expires(world, monkeypatch) -> None:
    from p2p import accept

    _alice, mallory, carol, c = world
    ref = DocRef(c.id, FEED, mallory.public_key)
    links = hostile.chain(mallory, ref, 3)
    carol.acceptor().accept([Incoming(ref, ref.id, [links[2][0]], [links[2][1]])])
    assert carol.store.db.execute("SELECT count(*) FROM pending").fetchone()[0] == 1
    monkeypatch.setattr(accept, "PENDING_EXPIRY", -1)
    carol.acceptor().accept([])
    assert carol.store.db.execute("SELECT count(*) FROM pending").fetchone()[0] == 0


def test_demoted_moderator_cannot_build_on_old_history(world) -> None:
    alice, mallory, carol, c = world
    cm.set_role(alice, c, mallory.public_key, "moderator")
    share(alice, mallory)
    share(alice, carol)
    ref = DocRef(c.id, COMMUNITY, alice.public_key)
    old = mallory.docs.heads(ref.id)
    cm.set_role(alice, c, mallory.public_key, "member")
    share(alice, carol)
    post_id = next(p["id"] for p in feed.all_posts(carol, cm.resolve(carol, c.hex)))
    hide = hostile.backdated_hide(mallory, ref, post_id, old)
    report = carol.acceptor().accept([Incoming(ref, ref.id, [hide[0]], [hide[1]])])
    assert [r.reason for r in report.rejected] == [
        "made by a moderator after their demotion or ban"
    ]
    assert post_id not in cm.state(carol, cm.resolve(carol, c.hex))["hidden"]


def test_demotion_arriving_later_sets_the_backdated_change_aside(world) -> None:
    alice, mallory, carol, c = world
    cm.set_role(alice, c, mallory.public_key, "moderator")
    share(alice, mallory)
    share(alice, carol)
    ref = DocRef(c.id, COMMUNITY, alice.public_key)
    old = mallory.docs.heads(ref.id)
    cm.set_role(alice, c, mallory.public_key, "member")
    post_id = next(p["id"] for p in feed.all_posts(carol, cm.resolve(carol, c.hex)))
    hide = hostile.backdated_hide(mallory, ref, post_id, old)
    # carol gets the hide first (mallory still a moderator as far as she knows)
    first = carol.acceptor().accept([Incoming(ref, ref.id, [hide[0]], [hide[1]])])
    assert first.applied == 1
    assert post_id in cm.state(carol, cm.resolve(carol, c.hex))["hidden"]
    # then the demotion: the hide made after it (unseen by alice) is set aside
    demotion = [from_record(r) for r in exchange.records_for(alice, exchange.inventory(carol))]
    second = carol.acceptor().accept(demotion)
    assert second.set_aside == 1
    assert post_id not in cm.state(carol, cm.resolve(carol, c.hex))["hidden"]
    assert cm.role(carol, cm.resolve(carol, c.hex), mallory.public_key) == "member"
    still_works(carol, c)


def test_one_bad_document_does_not_roll_back_the_others(world, monkeypatch) -> None:
    """A fault of the binding on one document (simulated: the stored document
    with the new change does not load) refuses that document alone; the batch's
    others apply."""
    from p2p import binding
    from p2p.errors import DamagedData

    alice, mallory, carol, c = world
    content.post(mallory, cm.resolve(mallory, c.hex), "mallory's second")
    good = honest_news(alice, carol, c)
    bad = [from_record(r) for r in exchange.records_for(mallory, exchange.inventory(carol))]
    bad = [i for i in bad if i.ref.owner == mallory.public_key]
    mref = DocRef(c.id, FEED, mallory.public_key)
    before = carol.docs.data(mref.id)
    real = binding.load

    def load(data: bytes, what: str = "", *, outside: bool = True):  # noqa: ANN202
        if b"mallory's second" in data:
            raise DamagedData("the document would not load again after these changes")
        return real(data, what, outside=outside)

    monkeypatch.setattr(binding, "load", load)
    report = carol.acceptor().accept([*good, *bad])
    assert [r.doc for r in report.rejected] == [mref.id]
    assert "would not load again" in report.rejected[0].reason
    assert "honest news" in texts(carol, c)
    assert carol.docs.data(mref.id) == before


def test_stored_document_that_no_longer_loads_is_repaired_or_set_aside(world) -> None:
    alice, mallory, carol, c = world
    ref = DocRef(c.id, FEED, mallory.public_key)
    # what an older version could commit: a save that never loads again
    with carol.store.transaction() as db:
        db.execute("UPDATE docs SET snapshot = ? WHERE id = ?", (b"\x85oJ\x83broken", ref.id))
    carol.docs.forget()
    assert carol.docs.load(ref.id) is None
    assert [(r.kind, r.owner) for r, _ in carol.docs.set_aside()] == [(FEED, mallory.public_key)]
    feed.thread(carol, cm.resolve(carol, c.hex))
    assert "alice's first post" in texts(carol, c)
    assert "mallory's post" not in texts(carol, c)  # indexes follow the removal
    # the next peer sends it again, whole
    share(mallory, carol)
    assert "mallory's post" in texts(carol, c)
    # a log entry that fails is dropped, the rest of the document kept
    aref = DocRef(c.id, FEED, alice.public_key)
    with carol.store.transaction() as db:
        db.execute("INSERT INTO changes (doc, n, data) VALUES (?, 0, ?)", (aref.id, b"junk"))
    carol.docs.forget()
    assert carol.docs.load(aref.id) is not None
    assert "alice's first post" in texts(carol, c)


@pytest.mark.parametrize(
    "field, value",
    [
        ("community", 10**12),  # bytes(10**12) would try to allocate a terabyte
        ("owner", -1),
        ("doc", "text"),
        ("kind", 7),
        ("data", 2**40),
        ("sigs", [[2**40, b"x", b"y"]]),
        ("sigs", 5),
    ],
)
def test_oddly_typed_record_fields_are_one_plain_error(world, field, value) -> None:
    alice, _mallory, _carol, c = world
    record = next(exchange.records_for(alice, None))
    with pytest.raises(ValueError, match="malformed document record"):
        from_record({**record, field: value})


def test_forks_beyond_the_proof_limit_are_still_reported_once(world, monkeypatch) -> None:
    from p2p import accept

    monkeypatch.setattr(accept, "MAX_PROOFS", 0)
    _alice, mallory, carol, c = world
    ref = DocRef(c.id, FEED, mallory.public_key)
    (a, sa), (b, sb) = hostile.fork_pair(mallory, ref)
    first = carol.acceptor().accept([Incoming(ref, ref.id, a + b, sa + sb)])
    assert len(first.forks) == 1
    (x, sx), _ = hostile.fork_pair(mallory, ref)  # more news on the same document
    again = carol.acceptor().accept([Incoming(ref, ref.id, x, sx)])
    assert again.forks == [r for r in again.forks if r[1].dropped != first.forks[0][1].dropped]
    proof = carol.store.db.execute("SELECT proof FROM forks").fetchone()[0]
    assert proof == b"\xc0"  # recorded without its changes
