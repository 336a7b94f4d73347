"""The indexes through the real CLI: search, rebuild, a store from before the
indexes, hostile values arriving through acceptance, writes that load only the
writer's own documents, and post-id prefixes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from automerge.core import ROOT, ObjType, ScalarType

from p2p import community as cm
from p2p import content, feed, index, invites
from p2p.docref import FEED, DocRef
from p2p.documents import Documents, get_obj
from p2p.errors import UnknownPost
from p2p.home import Home
from tests.helpers import cli, make_home, share


@pytest.fixture
def pair(tmp_path: Path):
    alice = make_home(tmp_path / "alice", "Alice")
    bob = make_home(tmp_path / "bob", "Bob")
    c = cm.create(alice, "Village")
    invites.join(bob, invites.write(alice, c))
    share(bob, alice)
    yield alice, bob, c, cm.resolve(bob, c.hex)
    alice.close()
    bob.close()


def js(res) -> object:  # noqa: ANN001
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_search_leaves_out_hidden_banned_and_deleted(pair) -> None:
    alice, bob, c, bc = pair
    kept = content.post(alice, c, "the river is high near the mill")
    hidden = content.post(alice, c, "river crossing closed")
    gone = content.post(alice, c, "river picnic on sunday")
    content.delete(alice, c, gone["id"])
    bobs = content.post(bob, bc, "bob saw the river too")
    share(bob, alice)
    cm.hide(alice, c, hidden["id"])
    found = js(cli(alice.path, "search", c.hex, "river", "--json"))
    assert {r["id"] for r in found} == {kept["id"], bobs["id"]}
    cm.ban(alice, c, bob.public_key)
    found = js(cli(alice.path, "search", c.hex, "river", "--json"))
    assert [r["id"] for r in found] == [kept["id"]]
    # words are words, never FTS5 syntax
    assert js(cli(alice.path, "search", c.hex, 'NEAR("river', "--json")) == []
    plain = cli(alice.path, "search", c.hex, "mill")
    assert plain.returncode == 0 and "the river is high near the mill" in plain.stdout


def _forget_indexes(home: Home) -> None:
    """What a store written before the indexes existed looks like."""
    with home.store.transaction() as db:
        for table in index.update.TABLES + ("ix_flags", "ix_docs", "ix_bad"):
            db.execute(f"DELETE FROM {table}")
        db.execute("INSERT INTO ix_posts_fts (ix_posts_fts) VALUES ('rebuild')")


def test_rebuild_and_first_use_give_the_same_views(pair) -> None:
    alice, bob, c, bc = pair
    first = content.post(alice, c, "first")
    share(alice, bob)
    content.post(bob, bc, "a reply", reply_to=first["id"])
    content.react(bob, bc, first["id"], "👍")
    share(bob, alice)
    before = js(cli(alice.path, "feed", c.hex, "--json", "--last", "0"))
    assert before == json.loads(json.dumps(feed.thread(alice, c)))
    assert before[0]["replies"][0]["text"] == "a reply"
    assert before[0]["reactions"] == {"👍": [bob.public_key.hex()]}
    _forget_indexes(alice)
    assert alice.store.db.execute("SELECT count(*) FROM ix_posts").fetchone()[0] == 0
    assert js(cli(alice.path, "feed", c.hex, "--json", "--last", "0")) == before  # first use
    assert [r["id"] for r in js(cli(alice.path, "search", c.hex, "reply", "--json"))] != []
    _forget_indexes(alice)
    rebuilt = js(cli(alice.path, "index", "rebuild", "--json"))
    assert rebuilt[0]["community"] == c.hex and rebuilt[0]["documents"] >= 4
    assert js(cli(alice.path, "feed", c.hex, "--json", "--last", "0")) == before
    assert js(cli(alice.path, "feed", c.hex, "--json", "--last", "1")) == before


def _hostile_feed(bob: Home, bc: cm.Community) -> None:
    """Bob signs a feed full of values of the wrong type (his own key, his own document)."""

    def edit(doc, tx) -> None:  # noqa: ANN001
        posts = get_obj(doc, ROOT, "posts")
        for key, field, kind, value in [
            ("a1", "ts", ScalarType.Int, 2**62),
            ("a2", "ts", ScalarType.Int, -5),
            ("a3", "ts", ScalarType.Str, "tomorrow"),
            ("a4", "text", ScalarType.Int, 7),
            ("a5", "edited", ScalarType.F64, 1.5),
            ("a6", "parent", ScalarType.Int, 3),
        ]:
            p = tx.put_object(posts, key, ObjType.Map)
            tx.put(p, "text", ScalarType.Str, "odd")
            tx.put(p, field, kind, value)
        tx.put_object(posts, "a7", ObjType.List)
        tx.put(posts, "a8", ScalarType.Str, "not a post")
        m = tx.put_object(posts, "a9", ObjType.Map)
        tx.put(m, "text", ScalarType.Str, "a fine post among odd ones")
        tx.put(m, "ts", ScalarType.Int, 1_700_000_000_000)
        tx.put(ROOT, "reactions", ScalarType.Str, "not a map")

    bob.docs.write(DocRef(bc.id, FEED, bob.public_key), bob.identity, edit)


def test_hostile_values_are_skipped_and_counted_through_acceptance(pair) -> None:
    alice, bob, c, bc = pair
    content.post(bob, bc, "hello")
    _hostile_feed(bob, bc)
    share(bob, alice)
    shown = js(cli(alice.path, "feed", c.hex, "--json"))
    assert sorted(p["text"] for p in shown) == ["a fine post among odd ones", "hello"]
    assert cli(alice.path, "feed", c.hex).returncode == 0
    assert index.bad_entries(alice.store.db, c.id) == 9
    rebuilt = js(cli(alice.path, "index", "rebuild", c.hex, "--json"))
    assert rebuilt[0]["bad_entries"] == 9
    # banning the author removes every effect of their data, reactions included
    first = content.post(alice, c, "alice's post")
    share(alice, bob)
    content.react(bob, bc, first["id"], "🎉")
    share(bob, alice)
    mine = [p for p in js(cli(alice.path, "feed", c.hex, "--json")) if p["id"] == first["id"]]
    assert mine[0]["reactions"] == {"🎉": [bob.public_key.hex()]}
    cm.ban(alice, c, bob.public_key)
    shown = js(cli(alice.path, "feed", c.hex, "--json"))
    assert [p["text"] for p in shown] == ["alice's post"] and shown[0]["reactions"] == {}


def test_writing_loads_only_the_writers_own_documents(pair, monkeypatch) -> None:
    alice, bob, c, bc = pair
    target = content.post(alice, c, "reply to me")
    share(alice, bob)
    loaded: list[bytes] = []
    real = Documents.load

    def spy(self: Documents, doc_id: bytes):  # noqa: ANN202
        loaded.append(doc_id)
        return real(self, doc_id)

    monkeypatch.setattr(Documents, "load", spy)
    content.post(bob, bc, "a reply", reply_to=target["id"][:12])
    content.react(bob, bc, target["id"], "👍")
    from p2p import chat

    chat.send(bob, bc, "hi")
    others = {
        r.id for r in (DocRef(c.id, k, alice.public_key) for k in ("feed", "chat", "profile"))
    }
    assert loaded and not others & set(loaded)


def test_the_id_feed_shows_always_works_and_prefixes_are_unique(pair) -> None:
    alice, _bob, c, _bc = pair
    one = content.post(alice, c, "one")
    two = content.post(alice, c, "two")
    assert one["id"][:8] == two["id"][:8]  # the author's part
    with pytest.raises(UnknownPost, match="several posts"):
        content.find_post(alice, c, one["id"][:4])
    with pytest.raises(UnknownPost, match="at least 4"):
        content.find_post(alice, c, one["id"][:3])
    n = next(n for n in range(9, 25) if one["id"][:n] != two["id"][:n])
    assert content.find_post(alice, c, one["id"][:n])["id"] == one["id"]
    out = cli(alice.path, "feed", c.hex).stdout
    for p in (one, two):
        assert p["id"] in out
        shown = cli(alice.path, "react", c.hex, p["id"], "👍")
        assert shown.returncode == 0, shown.stderr


def test_direct_messages_from_the_index_skip_hostile_boxes(pair) -> None:
    import msgpack
    import pyrage
    from pyrage import x25519

    from p2p import dm
    from p2p.docref import DM

    alice, bob, c, bc = pair
    content.post(alice, c, "hello")  # publishes alice's key
    share(alice, bob)
    dm.send(bob, bc, alice.public_key, "a real message")
    to_alice = x25519.Recipient.from_str(alice.public_identity().age_recipient)

    def hostile(doc, tx) -> None:  # noqa: ANN001
        boxes = get_obj(doc, ROOT, "boxes")
        tx.put(boxes, "b1", ScalarType.Str, "not a box")
        tx.put_object(boxes, "b2", ObjType.List)
        m = tx.put_object(boxes, "b3", ObjType.Map)
        tx.put(m, "box", ScalarType.Bytes, b"garbage")
        odd = {"v": 1, "from": bob.public_key, "to": alice.public_key, "community": c.id}
        for key, ts in (("b4", "soon"), ("b5", 2**62)):
            sealed = pyrage.encrypt(msgpack.packb({**odd, "text": "odd", "ts": ts}), [to_alice])
            m = tx.put_object(boxes, key, ObjType.Map)
            tx.put(m, "box", ScalarType.Bytes, sealed)

    bob.docs.write(DocRef(bc.id, DM, bob.public_key), bob.identity, hostile)
    share(bob, alice)
    shown = js(cli(alice.path, "dm", "show", c.hex, "--json"))
    assert [m["text"] for m in shown] == ["a real message"]
    assert cli(alice.path, "dm", "show", c.hex).returncode == 0
    assert [m["text"] for m in dm.messages(bob, bc)] == ["a real message"]


# ix_posts as index layout 1 wrote it (store.INDEX_VERSION 1): 32-byte keys and `local`
V1_POSTS = """
CREATE TABLE ix_posts (
    n INTEGER PRIMARY KEY, community BLOB NOT NULL, author BLOB NOT NULL, local TEXT NOT NULL,
    id TEXT NOT NULL, ts INTEGER NOT NULL, parent TEXT, text TEXT NOT NULL, edited INTEGER,
    deleted INTEGER NOT NULL, orphan INTEGER NOT NULL, attachments BLOB,
    UNIQUE (community, author, local));
CREATE INDEX ix_posts_by_id ON ix_posts (community, id);
CREATE INDEX ix_posts_by_parent ON ix_posts (community, parent);
CREATE INDEX ix_posts_roots ON ix_posts (community, orphan, ts, id, author);
CREATE VIRTUAL TABLE ix_posts_fts USING fts5 (text, content = 'ix_posts', content_rowid = 'n');
"""


def test_a_store_with_the_old_index_layout_is_reindexed_with_the_same_views(pair) -> None:
    alice, bob, c, bc = pair
    first = content.post(alice, c, "the river is high")
    share(alice, bob)
    content.post(bob, bc, "a river reply", reply_to=first["id"])
    hidden = content.post(bob, bc, "hidden river")
    share(bob, alice)
    cm.hide(alice, c, hidden["id"])
    views = [("feed", c.hex, "--json", "--last", "0"), ("search", c.hex, "river", "--json")]
    before = [js(cli(alice.path, *v)) for v in views]
    assert len(before[0]) == 1 and len(before[1]) == 2
    path = alice.store.path
    alice.close()
    # rewrite the index tables as layout 1 left them, rows included
    db = sqlite3.connect(path, isolation_level=None)
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'ix_posts%'")]
    assert "ix_keys" not in names
    db.execute("DROP TABLE ix_posts_fts")
    db.execute("DROP TABLE ix_posts")
    db.executescript(V1_POSTS)
    db.execute(
        "INSERT INTO ix_posts (community, author, local, id, ts, text, deleted, orphan)"
        " VALUES (?, ?, 'zz', 'stale', 1, 'left from layout 1', 0, 1)",
        (c.id, bob.public_key),
    )
    db.execute("DELETE FROM meta WHERE key = 'index'")
    db.close()
    assert [js(cli(alice.path, *v)) for v in views] == before
    reopened = Home(alice.path)
    db = reopened.store.db
    assert db.execute("SELECT value FROM meta WHERE key = 'index'").fetchone() == (2,)
    columns = {r[1] for r in db.execute("PRAGMA table_info(ix_posts)")}
    assert "local" not in columns and db.execute("SELECT count(*) FROM ix_posts").fetchone() == (3,)
    reopened.close()
