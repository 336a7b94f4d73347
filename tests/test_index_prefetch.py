"""A big import reads new feeds' posts on a second process (`p2p.index.prefetch`).

What the helper reads must be exactly what the importer would have read itself,
and a helper that fails, dies or falls behind may only make an import slower:
the index ends the same, and no process is left behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from automerge.core import ROOT, ObjType

from p2p import chat, content, invites
from p2p import community as cm
from p2p.bundle import export as ex
from p2p.bundle.importer import import_bundle
from p2p.docref import CHAT, FEED, DocRef
from p2p.documents import get_obj
from p2p.home import Home
from p2p.index import prefetch
from p2p.index.update import TOPS, _read, post_rows, whole
from tests.helpers import loads_in_this_process, make_home, prefetch_ahead


def _index(home: Home) -> list[tuple]:
    db = home.store.db
    posts = db.execute(
        "SELECT kc.key, ka.key, id, ts, parent, text, edited, deleted, orphan, attachments"
        " FROM ix_posts p JOIN ix_keys kc ON kc.k = p.community JOIN ix_keys ka"
        " ON ka.k = p.author ORDER BY id"
    ).fetchall()
    msgs = db.execute("SELECT * FROM ix_chat ORDER BY id").fetchall()
    found = db.execute(
        "SELECT rowid FROM ix_posts_fts WHERE ix_posts_fts MATCH 'river' ORDER BY rowid"
    ).fetchall()
    return [*posts, *msgs, ("fts", len(found))]


@pytest.fixture
def village(tmp_path: Path):
    """Alice's feed and chat (new to Bob and Carol), exported as one bundle."""
    alice = make_home(tmp_path / "alice", "Alice")
    c = cm.create(alice, "Village")
    invite = invites.write(alice, c)
    first = content.post(alice, c, "the river is rising")
    for i in range(30):
        content.post(alice, c, f"river bridge {i}", reply_to=first["id"] if i % 3 == 0 else None)
        chat.send(alice, c, f"chat {i}")
    with ex.scratch_dir(alice) as s:
        built = ex.build(alice, ex.domains([c])[0], Path(s))
        assert built is not None
        bundle = tmp_path / "village.p2p"
        os.replace(built.path, bundle)
    homes = []
    for name in ("bob", "carol"):
        h = make_home(tmp_path / name, name)
        invites.join(h, invite)
        homes.append(h)
    yield alice, c, bundle, homes
    for h in (alice, *homes):
        h.close()


def test_prefetched_index_is_the_same(village, monkeypatch) -> None:
    _alice, _c, bundle, (bob, carol) = village
    taken: list[bool] = []
    real = prefetch.Prefetch.take

    def counting(self, doc_id, heads):  # noqa: ANN001, ANN202
        if doc_id in self._sent:
            self.wait(doc_id, 60)  # as when the helper is ahead, in a big import
        got = real(self, doc_id, heads)
        taken.append(got is not None)
        return got

    monkeypatch.setattr(prefetch.Prefetch, "take", counting)
    prefetch_ahead(monkeypatch)
    loads_here = loads_in_this_process(monkeypatch)
    monkeypatch.setattr(prefetch, "PREFETCH_DOC", 0)  # every new document, however small
    first = import_bundle(bob, [bundle])
    helped = {
        ref: bob.docs.data(ref.id) for ref in first.report.new_docs if ref.kind in (FEED, CHAT)
    }
    # the helper loaded the feed and the chat: this process never did
    assert helped and not any(data in loads_here for data in helped.values())
    monkeypatch.setattr(prefetch, "PREFETCH_DOC", 1 << 40)  # none: read in process
    second = import_bundle(carol, [bundle])
    assert sum(taken) >= 2  # the feed and the chat went through the helper
    assert _index(bob) == _index(carol)
    assert ("fts", 31) in _index(bob)
    assert first.news == second.news and first.news.posts == 31
    assert first.report.applied == second.report.applied


def test_helper_reads_what_the_importer_reads(village) -> None:
    alice, c, _bundle, _homes = village
    helper = prefetch.Prefetch()
    try:
        refs = [DocRef(c.id, FEED, alice.public_key), DocRef(c.id, CHAT, alice.public_key)]
        for ref in refs:
            data = alice.docs.data(ref.id)
            assert data is not None
            helper.submit(ref.id, ref.kind, data)
        for ref in refs:
            doc = alice.docs.load(ref.id)
            assert doc is not None
            # every top-level map as the index reads it: a feed's posts as ready rows
            expected = {top: whole(doc, top) for top in TOPS[ref.kind]}
            obj = get_obj(doc, ROOT, prefetch.READ[ref.kind])
            if ref.kind == FEED:
                assert expected["posts"] == (False, post_rows(doc, obj))
            else:
                assert expected["messages"] == (False, _read(doc, ObjType.Map, obj))
            assert helper.wait(ref.id, 60)  # read already, as in a big import
            # ...with how many entries there are (all of them new, for the import's news)
            assert helper.take(ref.id, doc.get_heads()) == (expected, len(doc.keys(obj)))
        assert helper.take(b"\x00" * 16, []) is None  # never submitted
    finally:
        helper.close()
    assert helper._proc.poll() is not None  # no process left behind


def test_loaded_heads_only_for_the_bytes_sent(village) -> None:
    """The helper vouches for the heads of the very bytes object it was sent, once: a
    second record naming the same document (even with equal bytes) gets nothing."""
    alice, c, _bundle, _homes = village
    ref = DocRef(c.id, FEED, alice.public_key)
    data = alice.docs.data(ref.id) or b""
    doc = alice.docs.load(ref.id)
    assert doc is not None
    helper = prefetch.Prefetch()
    try:
        helper.submit(ref.id, FEED, data)
        assert helper.wait(ref.id, 60)
        assert helper.loaded(ref.id, bytes(bytearray(data))) is None  # another object
        assert helper.loaded(ref.id, data) == doc.get_heads()
        assert helper.loaded(ref.id, data) is None  # asked once
        assert helper.loaded(b"\x00" * 16, data) is None  # never submitted
    finally:
        helper.close()


def test_bytes_that_do_not_load_are_not_vouched(village) -> None:
    """Saved bytes the binding refuses (one byte changed): the helper says nothing was
    loaded, so the importer loads them itself and refuses them as before."""
    alice, c, _bundle, _homes = village
    ref = DocRef(c.id, FEED, alice.public_key)
    data = bytearray(alice.docs.data(ref.id) or b"")
    data[len(data) // 2] ^= 0x55
    bad = bytes(data)
    helper = prefetch.Prefetch()
    try:
        helper.submit(ref.id, FEED, bad)
        assert helper.wait(ref.id, 60)
        assert helper.loaded(ref.id, bad) is None
        assert helper.take(ref.id, []) is None
    finally:
        helper.close()


def test_other_heads_are_never_taken(village) -> None:
    alice, c, _bundle, _homes = village
    ref = DocRef(c.id, FEED, alice.public_key)
    helper = prefetch.Prefetch()
    try:
        helper.submit(ref.id, FEED, alice.docs.data(ref.id) or b"")
        assert helper.wait(ref.id, 60)
        assert helper.take(ref.id, [b"\x01" * 32]) is None
    finally:
        helper.close()


def test_a_dead_helper_only_slows_the_import(village, monkeypatch) -> None:
    """The helper is killed as the import starts (a fault): every feed is read in
    process and the index is the same."""
    _alice, _c, bundle, (bob, carol) = village
    real_init = prefetch.Prefetch.__init__

    def dying(self) -> None:  # noqa: ANN001
        real_init(self)
        self._proc.kill()
        self._proc.wait()

    monkeypatch.setattr(prefetch.Prefetch, "__init__", dying)
    monkeypatch.setattr(prefetch, "PREFETCH_DOC", 0)
    result = import_bundle(bob, [bundle])
    assert not result.report.rejected
    monkeypatch.setattr(prefetch, "PREFETCH_DOC", 1 << 40)
    import_bundle(carol, [bundle])
    assert _index(bob) == _index(carol)


def test_no_helper_can_start(village, monkeypatch) -> None:
    """Starting the helper fails (a fault: no interpreter at that path): the import reads
    every feed itself and ends the same."""
    import sys

    _alice, _c, bundle, (bob, carol) = village
    monkeypatch.setattr(prefetch, "PREFETCH_DOC", 0)
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    result = import_bundle(bob, [bundle])
    assert not result.report.rejected and result.report.applied
    monkeypatch.undo()
    monkeypatch.setattr(prefetch, "PREFETCH_DOC", 1 << 40)
    import_bundle(carol, [bundle])
    assert _index(bob) == _index(carol)
