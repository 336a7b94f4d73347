"""The index's bulk path for a feed it holds nothing of (a fresh import, a rebuild):
the fast whole-map read and the set-wise statements give the same rows and flags."""

from __future__ import annotations

from pathlib import Path

from automerge.core import ROOT, Document, ObjType, ScalarType

from p2p.docref import FEED, DocRef
from p2p.documents import to_py
from p2p.home import Home
from p2p.index import update


def _feed(actor: bytes, posts: dict[str, str]) -> Document:
    doc = Document(actor_id=actor)
    with doc.transaction() as tx:
        m = tx.put_object(ROOT, "posts", ObjType.Map)
        for key, text in posts.items():
            p = tx.put_object(m, key, ObjType.Map)
            tx.put(p, "text", ScalarType.Str, text)
            tx.put(p, "ts", ScalarType.Int, 1)
    return doc


def test_whole_map_read_matches_to_py_with_nesting_and_conflicts() -> None:
    a = Document(actor_id=b"\x01" * 32)
    with a.transaction() as tx:
        m = tx.put_object(ROOT, "posts", ObjType.Map)
        tx.put(m, "k1", ScalarType.Str, "first")
        t = tx.put_object(m, "t", ObjType.Text)
        tx.splice_text(t, 0, 0, "hello")
    b = a.fork()
    b.set_actor(b"\x02" * 32)
    with a.transaction() as tx:
        tx.put(m, "k1", ScalarType.Str, "from a")
        lst = tx.put_object(m, "k3", ObjType.List)
        tx.insert(lst, 0, ScalarType.Int, 5)
        inner = tx.insert_object(lst, 1, ObjType.Map)
        tx.put(inner, "deep", ScalarType.Str, "x")
    with b.transaction() as tx:
        tx.put(m, "k1", ScalarType.Str, "from b")  # a conflict: the same winner both ways
        tx.put_object(m, "k2", ObjType.Map)
    a.merge(b)
    assert update._read(a, ObjType.Map, m) == to_py(a, m)
    assert update._read(a, ObjType.Map, ROOT) == to_py(a)
    assert to_py(a, m)["k3"] == [5, {"deep": "x"}]


def test_bulk_insert_indexes_posts_and_flags_an_id_collision(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    c = b"\x07" * 32
    one, two, other = b"\xaa" * 4 + b"\x01" * 28, b"\xaa" * 4 + b"\x02" * 28, b"\xbb" * 32
    with home.store.transaction() as db:
        update.observe(db, DocRef(c, FEED, one), _feed(one, {"k1": "a", "k2": "b"}), [])
        update.observe(db, DocRef(c, FEED, other), _feed(other, {"k1": "c"}), [])
        assert update.flags(db, c) == set()
        # same first four key bytes and the same local key: the same post id
        update.observe(db, DocRef(c, FEED, two), _feed(two, {"k2": "d"}), [])
        assert update.flags(db, c) == {"collision"}
        rows = db.execute(
            "SELECT k.key, substr(p.id, 9), text, orphan FROM ix_posts p"
            " JOIN ix_keys k ON k.k = p.author ORDER BY text"
        ).fetchall()
        assert rows == [
            (one, "k1", "a", 1),
            (one, "k2", "b", 1),
            (other, "k1", "c", 1),
            (two, "k2", "d", 1),
        ]
        found = db.execute(
            "SELECT text FROM ix_posts WHERE n IN"
            " (SELECT rowid FROM ix_posts_fts WHERE ix_posts_fts MATCH 'b OR c')"
        ).fetchall()
        assert sorted(r[0] for r in found) == ["b", "c"]
    home.close()


def _replies(actor: bytes, parents: dict[str, str]) -> Document:
    """A feed of replies: local key -> the id of the post each answers."""
    doc = Document(actor_id=actor)
    with doc.transaction() as tx:
        m = tx.put_object(ROOT, "posts", ObjType.Map)
        for key, parent in parents.items():
            p = tx.put_object(m, key, ObjType.Map)
            tx.put(p, "text", ScalarType.Str, f"reply {key}")
            tx.put(p, "ts", ScalarType.Int, 2)
            tx.put(p, "parent", ScalarType.Str, parent)
    return doc


def test_replies_indexed_before_their_parents_are_linked_when_the_parents_come(
    tmp_path: Path,
) -> None:
    """Only replies into the new author's id range are looked at, and exactly those
    whose parent now exists stop being orphans."""
    home = Home(tmp_path / "h")
    c = b"\x07" * 32
    author, replier = b"\xaa" * 4 + b"\x01" * 28, b"\xbb" * 32
    pre = author[:4].hex()
    with home.store.transaction() as db:
        update.observe(
            db,
            DocRef(c, FEED, replier),
            _replies(replier, {"r1": pre + "k1", "r2": pre + "nope", "r3": "aa" + "k1"}),
            [],
        )
        orphans = (
            "SELECT substr(p.id, 9), orphan FROM ix_posts p JOIN ix_keys k ON k.k = p.author"
            " WHERE k.key = ? ORDER BY p.id"
        )
        assert db.execute(orphans, (replier,)).fetchall() == [("r1", 1), ("r2", 1), ("r3", 1)]
        update.observe(db, DocRef(c, FEED, author), _feed(author, {"k1": "root"}), [])
        assert db.execute(orphans, (replier,)).fetchall() == [("r1", 0), ("r2", 1), ("r3", 1)]
    home.close()


def _chat(actor: bytes, n: int) -> Document:
    doc = Document(actor_id=actor)
    with doc.transaction() as tx:
        m = tx.put_object(ROOT, "messages", ObjType.Map)
        for i in range(n):
            e = tx.put_object(m, f"m{i:03}", ObjType.Map)
            tx.put(e, "text", ScalarType.Str, f"hello {i}")
            tx.put(e, "ts", ScalarType.Int, i)
            if i % 3 == 0:
                tx.put(e, "room", ScalarType.Str, "market")
        odd = tx.put_object(m, "odd-ts", ObjType.Map)
        tx.put(odd, "ts", ScalarType.Str, "yesterday")
        tx.put(m, "not-a-map", ScalarType.Int, 42)
        lst = tx.put_object(m, "a-list", ObjType.List)
        tx.insert(lst, 0, ScalarType.Int, 1)
    return doc


def test_bulk_chat_gives_the_rows_and_marks_of_the_one_by_one_path(tmp_path: Path) -> None:
    c, me = b"\x07" * 32, b"\x05" * 32
    ref = DocRef(c, "chat", me)
    doc = _chat(me, 30)
    got = []
    for i, bulk in enumerate((True, False)):
        home = Home(tmp_path / f"h{i}")
        with home.store.transaction() as db:
            if bulk:
                update.observe(db, ref, doc, [])
            else:
                obj = update.get_obj(doc, ROOT, "messages")
                assert obj is not None
                update._entries(db, ref, doc, "messages", set(doc.keys(obj)))
            rows = db.execute(
                "SELECT author, local, id, room, text, ts, attachments FROM ix_chat ORDER BY local"
            ).fetchall()
            bad = db.execute("SELECT top, key FROM ix_bad WHERE key != '*' ORDER BY key").fetchall()
            words = db.execute(
                "SELECT count(*) FROM ix_chat_fts WHERE ix_chat_fts MATCH 'hello'"
            ).fetchone()
        got.append((rows, bad, words))
        home.close()
    assert got[0] == got[1]
    rows, bad, words = got[0]
    assert len(rows) == 30 and words == (30,)
    assert bad == [("messages", "a-list"), ("messages", "not-a-map"), ("messages", "odd-ts")]
    assert sum(1 for r in rows if r[3] == "market") == 10
