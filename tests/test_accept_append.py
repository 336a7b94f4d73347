"""An import into a document the store holds costs one load, and stores what loaded.

The owner's next changes to an author-owned document are judged from its
latest change (`doc_tips`) and the log, loaded once together with the stored
bytes, and appended to the log without a `save()`. These tests count the
binding's work and check that what is stored loads, including when the log is
folded into the snapshot and when the folded form would not load back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from p2p import binding, content, documents, exchange, invites
from p2p import community as cm
from p2p.accept import Incoming, from_record
from p2p.docref import FEED, DocRef
from p2p.errors import DamagedData
from p2p.home import Home
from tests import hostile
from tests.helpers import make_home, share


@pytest.fixture
def pair(tmp_path: Path):
    """Alice posts; Bob holds everything she wrote so far."""
    alice = make_home(tmp_path / "alice", "Alice")
    bob = make_home(tmp_path / "bob", "Bob")
    c = cm.create(alice, "Village")
    invites.join(bob, invites.write(alice, c))
    for i in range(3):
        content.post(alice, c, f"old {i}")
    share(alice, bob)
    yield alice, bob, c
    alice.close()
    bob.close()


def news_for(bob: Home, alice: Home) -> list[Incoming]:
    return [from_record(r) for r in exchange.records_for(alice, exchange.inventory(bob))]


def counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the binding's loads and saves made while accepting."""
    calls = {"load": 0, "save": 0}
    real_load, real_save = binding.load, binding.save

    def load(data: bytes, what: str = "", *, outside: bool = True):  # noqa: ANN202
        calls["load"] += 1
        return real_load(data, what, outside=outside)

    def save(doc):  # noqa: ANN001, ANN202
        calls["save"] += 1
        return real_save(doc)

    monkeypatch.setattr(binding, "load", load)
    monkeypatch.setattr(binding, "save", save)
    return calls


def texts(home: Home, c: cm.Community) -> list[str]:
    from p2p import feed

    return sorted(p["text"] for p in feed.all_posts(home, cm.resolve(home, c.hex)))


def test_new_posts_cost_one_load_and_no_save(pair, monkeypatch) -> None:
    alice, bob, c = pair
    ref = DocRef(c.id, FEED, alice.public_key)
    assert bob.docs.tip(ref) is not None  # learnt when the whole feed arrived
    for i in range(2):
        content.post(alice, c, f"new {i}")
    batch = news_for(bob, alice)
    logged = bob.store.db.execute("SELECT count(*) FROM changes WHERE doc = ?", (ref.id,))
    before = logged.fetchone()[0]
    calls = counting(monkeypatch)
    report = bob.acceptor().accept(batch)
    assert report.applied == 2 and not report.rejected
    assert calls == {"load": 1, "save": 0}
    rows = bob.store.db.execute(
        "SELECT data FROM changes WHERE doc = ? ORDER BY n", (ref.id,)
    ).fetchall()
    assert len(rows) == before + 2
    # what is stored is exactly what loaded: the sender's document, change for change
    bob.docs.forget()
    stored = bob.docs.load(ref.id)
    assert stored is not None and stored.get_heads() == alice.docs.load(ref.id).get_heads()
    assert bob.docs.tip(ref) == (stored.get_heads()[0], len(stored.get_changes([])))
    assert texts(bob, c) == texts(alice, c)


def test_replayed_changes_are_known_without_loading(pair, monkeypatch) -> None:
    alice, bob, c = pair
    content.post(alice, c, "new")
    batch = news_for(bob, alice)
    assert bob.acceptor().accept(batch).applied == 1
    calls = counting(monkeypatch)
    again = bob.acceptor().accept(batch)
    assert again.applied == 0 and again.already == 1 and not again.rejected
    assert calls["load"] == 0


def test_a_long_log_is_folded_only_into_a_snapshot_that_loads(pair, monkeypatch) -> None:
    alice, bob, c = pair
    ref = DocRef(c.id, FEED, alice.public_key)
    monkeypatch.setattr(documents, "COMPACT_AFTER", 3)
    real = binding.reloads

    def refuses(data: bytes):  # noqa: ANN202
        raise DamagedData("the document would not load again after these changes")

    # the folded form would not load back: the log stays, and the store still loads
    monkeypatch.setattr(binding, "reloads", refuses)
    for i in range(4):
        content.post(alice, c, f"new {i}")
    assert bob.acceptor().accept(news_for(bob, alice)).applied == 4
    logged = bob.store.db.execute("SELECT count(*) FROM changes WHERE doc = ?", (ref.id,))
    assert logged.fetchone()[0] >= 4
    bob.docs.forget()
    assert texts(bob, c) == texts(alice, c)

    # it does load back: folded into the snapshot, the log emptied
    monkeypatch.setattr(binding, "reloads", real)
    content.post(alice, c, "one more")
    assert bob.acceptor().accept(news_for(bob, alice)).applied == 1
    logged = bob.store.db.execute("SELECT count(*) FROM changes WHERE doc = ?", (ref.id,))
    assert logged.fetchone()[0] == 0
    bob.docs.forget()
    assert texts(bob, c) == texts(alice, c)
    assert bob.docs.tip(ref) is not None


def test_a_stale_tip_sends_the_change_the_full_way(pair, monkeypatch) -> None:
    """A tip row that is not the document's one head is ignored (never trusted)."""
    alice, bob, c = pair
    ref = DocRef(c.id, FEED, alice.public_key)
    with bob.store.transaction() as db:
        db.execute("UPDATE doc_tips SET hash = ? WHERE doc = ?", (b"\x01" * 32, ref.id))
    assert bob.docs.tip(ref) is None
    content.post(alice, c, "new")
    calls = counting(monkeypatch)
    assert bob.acceptor().accept(news_for(bob, alice)).applied == 1
    assert calls["load"] >= 2  # the stored document, then with the change
    assert bob.docs.tip(ref) is not None  # and learnt again
    assert texts(bob, c) == texts(alice, c)


@pytest.mark.parametrize(
    "attack, reason",
    [
        (hostile.gap, "sequence gap"),
        (hostile.no_prev_dep, "does not build on its author's previous change"),
        (hostile.garbage_body, "unable to parse chunk"),
    ],
)
def test_a_hostile_next_change_is_refused_and_the_store_keeps_loading(pair, attack, reason) -> None:
    alice, bob, c = pair
    ref = DocRef(c.id, FEED, alice.public_key)
    before = bob.docs.data(ref.id)
    changes, sigs = attack(alice, ref)
    report = bob.acceptor().accept([Incoming(ref, ref.id, changes, sigs)])
    assert report.applied == 0 and len(report.rejected) == 1
    assert reason in report.rejected[0].reason
    assert bob.docs.data(ref.id) == before
    content.post(alice, c, "honest")
    assert bob.acceptor().accept(news_for(bob, alice)).applied == 1
    bob.docs.forget()
    assert bob.docs.load(ref.id) is not None


def test_topo_order_keeps_a_causal_order_and_sorts_any_other() -> None:
    from p2p import signing
    from p2p.chunk import RawChange

    def c(h: bytes, *deps: bytes) -> RawChange:
        return RawChange(h, b"a" * 32, 1, deps, b"")

    causal = {b"1": c(b"1"), b"2": c(b"2", b"1"), b"3": c(b"3", b"1"), b"4": c(b"4", b"2", b"3")}
    assert signing.topo_order(causal) == [b"1", b"2", b"3", b"4"]
    backwards = dict(reversed(list(causal.items())))
    order = signing.topo_order(backwards)
    assert sorted(order) == [b"1", b"2", b"3", b"4"]
    for h in order:
        assert all(order.index(d) < order.index(h) for d in causal[h].deps)
