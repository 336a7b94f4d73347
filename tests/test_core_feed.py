"""The threaded feed view: moderation placeholders, deep chains, hostile parent links."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from automerge.core import ObjType

from p2p import community as cm
from p2p import content, feed, invites
from p2p.documents import put_int, put_str
from p2p.home import Home
from tests.helpers import make_home, share


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


def shape(posts: list[dict]) -> list:
    """A thread as nested (text or removal reason, replies) pairs."""
    return [(p["removed"] or p["text"], shape(p["replies"])) for p in posts]


def test_hidden_post_keeps_its_replies_in_place(pair) -> None:
    alice, bob, c, bc = pair
    spam = content.post(bob, bc, "spam")
    content.post(bob, bc, "lonely spam")
    share(bob, alice)
    content.post(alice, c, "answer to spam", reply_to=spam["id"])
    for p in feed.all_posts(alice, c):
        if "spam" in p["text"] and p["author"] == bob.public_key.hex():
            cm.hide(alice, c, p["id"])
    view = feed.thread(alice, c)
    assert shape(view) == [("hidden", [("answer to spam", [])])]
    assert view[0]["author"] is None and view[0]["text"] == ""  # nothing of it leaks
    assert "spam" not in json.dumps(view).replace("answer to spam", "")


def test_banned_author_leaves_placeholders_only_where_replied_to(pair) -> None:
    alice, bob, c, bc = pair
    first = content.post(bob, bc, "bob one")
    content.post(bob, bc, "bob two")
    share(bob, alice)
    content.post(alice, c, "alice replies", reply_to=first["id"])
    content.react(bob, bc, first["id"], "x")
    share(bob, alice)
    cm.ban(alice, c, bob.public_key)
    view = feed.thread(alice, c)
    assert shape(view) == [("banned", [("alice replies", [])])]
    assert view[0]["reactions"] == {}
    assert [p["text"] for p in feed.all_posts(alice, c, moderated=True)] == ["alice replies"]


def write_raw_posts(home: Home, c, posts: list[tuple[str, str, int, str | None]]) -> None:
    """Posts (local id, text, ts, parent) written straight into the author's own
    feed document, as a modified client could: signed and valid, but unchecked."""

    def edit(doc, tx) -> None:  # noqa: ANN001
        root, _ = content._ensure_roots(doc, tx)
        for local, text, ts, parent in posts:
            p = tx.put_object(root, local, ObjType.Map)
            put_str(tx, p, "text", text)
            put_int(tx, p, "ts", ts)
            if parent:
                put_str(tx, p, "parent", parent)

    home.docs.write(content.feed_ref(c, home.public_key), home.identity, edit)


def test_a_very_deep_reply_chain_renders(pair) -> None:
    alice, bob, c, bc = pair
    prefix = bob.public_key[:4].hex()
    n = 1500  # deeper than Python's recursion limit
    chain = [(f"{i:016x}", f"p{i}", i, prefix + f"{i - 1:016x}" if i else None) for i in range(n)]
    write_raw_posts(bob, bc, chain)
    share(bob, alice)
    view = feed.thread(alice, c)
    depth, node = 0, view[0]
    while node["replies"]:
        assert len(node["replies"]) == 1 or depth == feed.MAX_DEPTH - 1
        node = node["replies"][0]
        depth += 1
    assert depth == feed.MAX_DEPTH
    flat = json.dumps(view)  # serialisable: nesting is bounded
    assert all(f'"p{i}"' in flat for i in range(n))


def test_a_parent_cycle_is_cut_not_lost(pair) -> None:
    """Bob writes, in his own feed, two posts that name each other as parent."""
    alice, bob, c, bc = pair
    prefix = bob.public_key[:4].hex()
    a, b = "a" * 16, "b" * 16
    write_raw_posts(bob, bc, [(a, "a", 1, prefix + b), (b, "b", 2, prefix + a)])
    share(bob, alice)
    view = feed.thread(alice, c)
    assert len(view) == 1
    assert sorted([view[0]["text"], view[0]["replies"][0]["text"]]) == ["a", "b"]
