"""A bulk insert into a small ix_posts defers its secondary indexes, full-text rows and
linking to the end of the transaction (`update.settle`): the rows, marks, flags and
words found must be exactly those of indexing each post one by one, whatever the
members wrote (replies to anything, cycles, shared ids, values of the wrong type)."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from automerge.core import ROOT, Document, ObjType, ScalarType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2p import feed, index
from p2p.docref import FEED, DocRef
from p2p.home import Home
from p2p.index import update
from p2p.store import Store
from tests.test_index_views import World, index_rows
from tests.test_index_views import action as views_action

C = b"\x07" * 32
# two authors share their first four key bytes: their posts can share ids
AUTHORS = [b"\xaa" * 4 + b"\x01" * 28, b"\xaa" * 4 + b"\x02" * 28, b"\xbb" * 32]
KEYS = ["k0", "k1", "k2", "k3", "k4", "k5"]
WORDS = ["river", "bridge", "stone", "rivers"]
IDS = [a[:4].hex() + k for a in AUTHORS for k in KEYS] + ["nope", ""]

entry = st.one_of(
    st.tuples(
        st.just("post"),
        st.lists(st.sampled_from(WORDS), max_size=3),
        st.integers(0, 10**6),
        st.none() | st.sampled_from(IDS),
        st.booleans(),  # deleted
        st.none() | st.integers(0, 10**6),  # edited
    ),
    st.tuples(st.just("odd_ts"), st.sampled_from(["soon", "map"])),
    st.tuples(st.just("odd_text"), st.integers(0, 9)),
    st.tuples(st.just("not_a_map"), st.integers(0, 9)),
    st.tuples(st.just("odd_parent"), st.integers(0, 9)),
    st.tuples(st.just("text_object"), st.sampled_from(WORDS)),  # a Text object, read as text
    st.tuples(st.just("uint_ts"), st.integers(0, 10**6)),
    st.tuples(st.just("null_parent"), st.sampled_from(WORDS)),
)
feeds = st.lists(st.dictionaries(st.sampled_from(KEYS), entry, max_size=6), min_size=3, max_size=3)


def _feed(actor: bytes, posts: dict) -> Document:
    doc = Document(actor_id=actor)
    with doc.transaction() as tx:
        m = tx.put_object(ROOT, "posts", ObjType.Map)
        for key, e in posts.items():
            if e[0] == "not_a_map":
                tx.put(m, key, ScalarType.Int, e[1])
                continue
            p = tx.put_object(m, key, ObjType.Map)
            if e[0] == "post":
                _, words, ts, parent, deleted, edited = e
                tx.put(p, "text", ScalarType.Str, " ".join(words))
                tx.put(p, "ts", ScalarType.Int, ts)
                if parent is not None:
                    tx.put(p, "parent", ScalarType.Str, parent)
                if deleted:
                    tx.put(p, "deleted", ScalarType.Boolean, True)
                if edited is not None:
                    tx.put(p, "edited", ScalarType.Int, edited)
            elif e[0] == "odd_ts":
                if e[1] == "map":
                    tx.put_object(p, "ts", ObjType.Map)
                else:
                    tx.put(p, "ts", ScalarType.Str, e[1])
            elif e[0] == "odd_text":
                tx.put(p, "text", ScalarType.Int, e[1])
            elif e[0] == "odd_parent":
                tx.put(p, "parent", ScalarType.Int, e[1])
            elif e[0] == "text_object":
                t = tx.put_object(p, "text", ObjType.Text)
                tx.splice_text(t, 0, 0, e[1])
                tx.put(p, "ts", ScalarType.Int, 5)
            elif e[0] == "uint_ts":
                tx.put(p, "text", ScalarType.Str, "river")
                tx.put(p, "ts", ScalarType.Uint, e[1])
            elif e[0] == "null_parent":
                tx.put(p, "parent", ScalarType.Null, None)
                tx.put(p, "text", ScalarType.Str, e[1])
                tx.put(p, "ts", ScalarType.Int, 7)
    return doc


@contextmanager
def deferring(at: int) -> Iterator[None]:
    """Defer every bulk insert of at least `at` posts (the real threshold is 1,000)."""
    saved = update.DEFER_MIN
    update.DEFER_MIN = at
    try:
        yield
    finally:
        update.DEFER_MIN = saved


def _state(db: sqlite3.Connection) -> tuple:
    rows = db.execute(
        "SELECT kc.key, ka.key, substr(p.id, 9), p.id, ts, parent, text, edited, deleted,"
        " orphan, attachments FROM ix_posts p JOIN ix_keys kc ON kc.k = p.community"
        " JOIN ix_keys ka ON ka.k = p.author ORDER BY 1, 2, 3"
    ).fetchall()
    bad = db.execute("SELECT doc, top, key FROM ix_bad ORDER BY 1, 2, 3").fetchall()
    flags = update.flags(db, C)
    found = {
        w: sorted(
            db.execute(
                "SELECT ka.key, substr(p.id, 9) FROM ix_posts p JOIN ix_keys ka"
                " ON ka.k = p.author WHERE n IN"
                " (SELECT rowid FROM ix_posts_fts WHERE ix_posts_fts MATCH ?)",
                (f'"{w}"',),
            ).fetchall()
        )
        for w in [*WORDS, "river bridge", "riv*"]
    }
    return rows, bad, flags, found


def _schema_whole(db: sqlite3.Connection) -> None:
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert {*update.DEFERRED_INDEXES, update.DEFERRED_TRIGGER} <= names
    assert db.execute("SELECT count(*) FROM ix_deferred").fetchone() == (0,)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.execute("INSERT INTO ix_posts_fts (ix_posts_fts) VALUES ('integrity-check')")


def _one_by_one(root: Path, docs: list[Document]) -> tuple:
    home = Home(root)
    with home.store.transaction() as db:
        for author, doc in zip(AUTHORS, docs, strict=True):
            obj = update.get_obj(doc, ROOT, "posts")
            assert obj is not None
            update._entries(db, DocRef(C, FEED, author), doc, "posts", set(doc.keys(obj)))
    got = _state(home.store.db)
    home.close()
    return got


def _deferred(root: Path, docs: list[Document], then_one: bool = False, at: int = 1) -> tuple:
    home = Home(root)
    with deferring(at), home.store.transaction() as db:
        for author, doc in zip(AUTHORS, docs, strict=True):
            update.observe(db, DocRef(C, FEED, author), doc, [])
            if then_one:  # a one-by-one write in the same transaction settles first
                obj = update.get_obj(doc, ROOT, "posts")
                keys = sorted(doc.keys(obj)) if obj is not None else []
                if keys:
                    update._entries(db, DocRef(C, FEED, author), doc, "posts", {keys[0]})
    _schema_whole(home.store.db)
    got = _state(home.store.db)
    home.close()
    return got


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(posts=feeds, then_one=st.booleans(), at=st.sampled_from([1, 10**9]))
def test_deferred_bulk_insert_equals_indexing_one_by_one(
    posts: list, then_one: bool, at: int
) -> None:
    """`at`: 1 defers every bulk insert, 10**9 none (the bulk path row by row)."""
    docs = [_feed(a, p) for a, p in zip(AUTHORS, posts, strict=True)]
    with tempfile.TemporaryDirectory() as tmp:
        want = _one_by_one(Path(tmp) / "a", docs)
        assert _deferred(Path(tmp) / "b", docs, then_one, at) == want


def test_a_cycle_and_a_shared_id_are_flagged_when_settling(tmp_path: Path) -> None:
    one, two, other = AUTHORS
    pre_one, pre_other = one[:4].hex(), other[:4].hex()
    docs = [
        _feed(one, {"k1": ("post", ["a"], 1, pre_other + "k1", False, None)}),
        _feed(two, {"k1": ("post", ["b"], 2, None, False, None)}),  # the same id as one's k1
        _feed(other, {"k1": ("post", ["c"], 3, pre_one + "k1", False, None)}),
    ]
    rows, _bad, flags, _found = _deferred(tmp_path / "h", docs)
    assert flags == {"cycle", "collision"}
    assert [r[9] for r in rows] == [0, 1, 0]  # one's and other's posts answer each other


def test_a_failed_transaction_leaves_the_indexes_as_they_were(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    doc = _feed(AUTHORS[0], {k: ("post", ["x"], 1, None, False, None) for k in KEYS})
    with deferring(1), pytest.raises(RuntimeError), home.store.transaction() as db:
        update.observe(db, DocRef(C, FEED, AUTHORS[0]), doc, [])
        assert db.execute("SELECT count(*) FROM ix_deferred").fetchone() == (1,)
        raise RuntimeError("the import failed")
    _schema_whole(home.store.db)
    assert home.store.db.execute("SELECT count(*) FROM ix_posts").fetchone() == (0,)
    home.close()


def test_small_inserts_and_big_tables_are_not_deferred(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    doc = _feed(AUTHORS[0], {k: ("post", ["x"], 1, None, False, None) for k in KEYS})
    with home.store.transaction() as db:  # 6 posts: under the real threshold
        update.observe(db, DocRef(C, FEED, AUTHORS[0]), doc, [])
        assert db.execute("SELECT count(*) FROM ix_deferred").fetchone() == (0,)
    saved = update.DEFER_EXISTING
    update.DEFER_EXISTING = 6
    try:  # the table already holds DEFER_EXISTING rows: re-sorting them would cost more
        with deferring(1), home.store.transaction() as db:
            update.observe(
                db, DocRef(C, FEED, AUTHORS[1]), _feed(AUTHORS[1], {"k": doc_entry()}), []
            )
            assert db.execute("SELECT count(*) FROM ix_deferred").fetchone() == (0,)
    finally:
        update.DEFER_EXISTING = saved
    home.close()


def doc_entry() -> tuple:
    return ("post", ["stone"], 2, None, False, None)


def test_a_store_left_unsettled_settles_on_its_next_use(tmp_path: Path) -> None:
    """Should a deferred insert ever be committed unsettled, opening the store puts the
    indexes back and the next view links and finds the rows."""
    home = Home(tmp_path / "h")
    docs = [_feed(a, {"k1": doc_entry()}) for a in AUTHORS]
    with deferring(1), home.store.transaction() as db:
        for author, doc in zip(AUTHORS, docs, strict=True):
            home.docs.replace(db, DocRef(C, FEED, author), doc)  # stored, and indexed
        assert db.execute("SELECT count(*) FROM ix_deferred").fetchone() == (1,)
        db.before_commit.clear()  # as if the commit had skipped the hook
    home.close()
    store = Store(tmp_path / "h" / "p2p.db")
    names = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master")}
    assert set(update.DEFERRED_INDEXES) <= names
    store.close()
    home = Home(tmp_path / "h")
    update.refresh(home.docs, C)
    _schema_whole(home.store.db)
    assert len(_state(home.store.db)[3]["stone"]) == 3
    home.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(views_action, min_size=4, max_size=20))
def test_a_deferred_rebuild_shows_the_same_views(script: list) -> None:
    """`p2p index rebuild` through the deferred path: every view as before."""
    with tempfile.TemporaryDirectory() as tmp:
        w = World(Path(tmp))
        try:
            for step in script:
                w.play(*step)
            want = feed.thread(w.home, w.c)
            rows = index_rows(w.home)
            with deferring(1):
                index.rebuild(w.home.docs, w.c.id)
            _schema_whole(w.home.store.db)
            assert index_rows(w.home) == rows
            assert feed.thread(w.home, w.c) == want
            assert list(feed.stream(w.home, w.c)) == want
            assert feed.latest(w.home, w.c, 2) == (want[-2:], max(0, len(want) - 2))
        finally:
            w.home.close()
            w.reader.close()
