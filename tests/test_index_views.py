"""Views read from the indexes equal views computed from the documents, for random
histories with replies, edits, deletions, reactions, moderation, bans, reply
cycles and values of the wrong type; incremental updates equal a rebuild."""

from __future__ import annotations

import tempfile
from pathlib import Path

from automerge.core import ROOT, ObjType, ScalarType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2p import chat, content, exchange, feed, index, invites
from p2p import community as cm
from p2p.accept import from_record
from p2p.docref import CHAT, FEED, PROFILE, DocRef
from p2p.documents import get_obj
from p2p.home import Home
from p2p.identity import Identity
from tests import direct_views as direct

WRITERS = 3
ODD = [
    ("int", 5),
    ("int", 2**62),
    ("int", -3),
    ("str", "soon"),
    ("map", None),
    ("bool", True),
    ("f64", 1.5),
    ("null", None),
]

action = st.tuples(
    st.sampled_from(
        [
            "post",
            "post",
            "reply",
            "reply",
            "edit",
            "delete",
            "react",
            "unreact",
            "hide",
            "unhide",
            "ban",
            "unban",
            "chat",
            "odd_field",
            "odd_post",
            "reparent",
            "drop",
            "name",
            "odd_name",
            "odd_ban",
            "odd_reactions",
        ]
    ),
    st.integers(0, WRITERS - 1),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
)


def _put(tx, obj: bytes, key: str, kind: str, value: object) -> None:  # noqa: ANN001
    if kind == "map":
        tx.put_object(obj, key, ObjType.Map)
    elif kind == "list":
        tx.put_object(obj, key, ObjType.List)
    else:
        scalar = {
            "int": ScalarType.Int,
            "str": ScalarType.Str,
            "bool": ScalarType.Boolean,
            "f64": ScalarType.F64,
            "null": ScalarType.Null,
        }[kind]
        tx.put(obj, key, scalar, value)


class World:
    def __init__(self, root: Path) -> None:
        self.home = Home(root / "h")
        self.home.create_identity(None)
        self.c = cm.create(self.home, "Village")
        self.ids = [self.home.identity] + [Identity.generate() for _ in range(WRITERS - 1)]
        self.reader = Home(root / "reader")  # hears of it all through the acceptance path
        self.reader.create_identity(None)
        invites.join(self.reader, invites.write(self.home, self.c))

    def share(self) -> None:
        """What the reader has not seen yet, accepted (Documents.replace: the diff path)."""
        have = exchange.inventory(self.reader)
        records = exchange.records_for(self.home, have)
        self.reader.acceptor().accept([from_record(r) for r in records])

    def write(self, who: int, kind: str, edit) -> None:  # noqa: ANN001
        ident = self.ids[who]
        owner = self.c.owner if kind == "community" else ident.public_key
        try:
            self.home.docs.write(DocRef(self.c.id, kind, owner), ident, edit)
        except ValueError as exc:  # an edit that changed nothing (e.g. a second equal ban)
            assert "changed nothing" in str(exc)

    def posts(self) -> list[str]:
        return [p["id"] for p in direct.collect(self.home, self.c)]

    def own(self, who: int) -> list[str]:
        ref = DocRef(self.c.id, FEED, self.ids[who].public_key)
        doc = self.home.docs.load(ref.id)
        posts = get_obj(doc, ROOT, "posts") if doc is not None else None
        return sorted(doc.keys(posts)) if posts is not None else []

    def play(self, kind: str, who: int, a: int, b: int) -> None:
        posts, own = self.posts(), self.own(who)
        owner = 0  # the identity of the home: the community's owner

        def feed_edit(fn):  # noqa: ANN001, ANN202
            def edit(doc, tx) -> None:  # noqa: ANN001
                obj = get_obj(doc, ROOT, "posts")
                if obj is None:
                    obj = tx.put_object(ROOT, "posts", ObjType.Map)
                fn(doc, tx, obj)

            self.write(who, FEED, edit)

        needs_own = ("edit", "delete", "reparent", "odd_field", "drop")
        if kind in ("post", "reply") or (kind in needs_own and not own):
            parent = posts[b % len(posts)] if kind == "reply" and posts else None

            def new(doc, tx, obj) -> None:  # noqa: ANN001
                p = tx.put_object(obj, f"{a:016x}", ObjType.Map)
                tx.put(p, "text", ScalarType.Str, f"post {a} word{b % 7}")
                tx.put(p, "ts", ScalarType.Int, 1_700_000_000_000 + (a % 1000) * 1000)
                if parent:
                    tx.put(p, "parent", ScalarType.Str, parent)

            feed_edit(new)
        elif kind in ("edit", "delete", "reparent", "odd_field"):
            local = own[a % len(own)]
            target = posts[b % len(posts)] if posts else "none"
            odd_kind, odd_value = ODD[(a // 7) % len(ODD)]
            field = ["ts", "text", "parent", "edited"][b % 4]

            def change(doc, tx, obj) -> None:  # noqa: ANN001
                got = doc.get(obj, local)
                if got is None or not isinstance(got[0], ObjType):
                    tx.put(obj, local, ScalarType.Str, "not a post")
                elif kind == "edit":
                    tx.put(got[1], "text", ScalarType.Str, f"edited {b}")
                    tx.put(got[1], "edited", ScalarType.Int, 1_700_000_000_500)
                elif kind == "delete":
                    tx.put(got[1], "text", ScalarType.Str, "")
                    tx.put(got[1], "deleted", ScalarType.Int, 1_700_000_000_600)
                elif kind == "reparent":
                    tx.put(got[1], "parent", ScalarType.Str, target)
                else:
                    _put(tx, got[1], field, odd_kind, odd_value)

            feed_edit(change)
        elif kind == "drop":
            local = own[a % len(own)]
            feed_edit(lambda doc, tx, obj: tx.delete(obj, local))
        elif kind == "odd_post":
            odd_kind, odd_value = ODD[b % len(ODD)]
            feed_edit(lambda doc, tx, obj: _put(tx, obj, f"{a:016x}", odd_kind, odd_value))
        elif kind in ("react", "unreact", "odd_reactions") and posts:
            target, emoji = posts[b % len(posts)], ["👍", "🎉", "b"][a % 3]

            def react(doc, tx) -> None:  # noqa: ANN001
                reactions = get_obj(doc, ROOT, "reactions")
                if reactions is None:
                    reactions = tx.put_object(ROOT, "reactions", ObjType.Map)
                if kind == "odd_reactions":
                    tx.put(reactions, target, ScalarType.Int, 3)
                    return
                mine = get_obj(doc, reactions, target)
                if mine is None:
                    mine = tx.put_object(reactions, target, ObjType.Map)
                if kind == "unreact" and doc.get(mine, emoji) is not None:
                    tx.delete(mine, emoji)
                else:
                    tx.put(mine, emoji, ScalarType.Int, 1)

            self.write(who, FEED, react)
        elif kind in ("hide", "unhide") and posts:
            target = posts[b % len(posts)]

            def hide(doc, tx) -> None:  # noqa: ANN001
                hidden = get_obj(doc, ROOT, "hidden")
                if kind == "hide":
                    tx.put(hidden, target, ScalarType.Int, 1)
                elif doc.get(hidden, target) is not None:
                    tx.delete(hidden, target)
                else:
                    tx.put(hidden, "nothing", ScalarType.Int, 1)

            self.write(owner, "community", hide)
        elif kind in ("ban", "unban", "odd_ban") and who != owner:
            key = self.ids[who].public_key.hex()

            def ban(doc, tx) -> None:  # noqa: ANN001
                bans = get_obj(doc, ROOT, "bans")
                if kind == "odd_ban":
                    tx.put(bans, f"zz{a}", ScalarType.Int, 1)
                elif kind == "ban" or doc.get(bans, key) is None:
                    tx.put(bans, key, ScalarType.Int, 1)
                else:
                    tx.delete(bans, key)

            self.write(owner, "community", ban)
        elif kind == "chat":

            def say(doc, tx) -> None:  # noqa: ANN001
                messages = get_obj(doc, ROOT, "messages")
                if messages is None:
                    messages = tx.put_object(ROOT, "messages", ObjType.Map)
                m = tx.put_object(messages, f"{a:016x}", ObjType.Map)
                tx.put(m, "room", ScalarType.Str, ["general", "market"][b % 2])
                if b % 5 == 0:
                    tx.put(m, "ts", ScalarType.Str, "later")
                else:
                    tx.put(m, "ts", ScalarType.Int, 1_700_000_000_000 + b)
                tx.put(m, "text", ScalarType.Str, f"chat {a}")

            self.write(who, CHAT, say)
        elif kind in ("name", "odd_name"):

            def named(doc, tx) -> None:  # noqa: ANN001
                if kind == "name":
                    tx.put(ROOT, "name", ScalarType.Str, f"Writer {a % 5}")
                else:
                    tx.put(ROOT, "name", ScalarType.Int, a)

            self.write(who, PROFILE, named)


def index_rows(home: Home) -> dict[str, list]:
    db = home.store.db
    out = {}
    for table, order in [
        ("ix_posts", "1, 2, 3"),
        ("ix_reactions", "1, 2, 3, 4"),
        ("ix_chat", "community, author, local"),
        ("ix_profiles", "1, 2"),
        ("ix_moderation", "1, 2, 3"),
        ("ix_bad", "1, 2, 3"),
    ]:
        cols = (
            "*"
            if table not in ("ix_posts", "ix_chat")
            else (
                "community, author, local, id, ts, parent, text, edited, deleted, orphan"
                if table == "ix_posts"
                else "community, author, local, id, room, text, ts"
            )
        )
        source = table
        if table == "ix_posts":  # community and author are numbers (ix_keys): compare keys
            cols = cols.replace("community, author, local", "kc.key, ka.key, substr(p.id, 9)")
            source = (
                "ix_posts p JOIN ix_keys kc ON kc.k = p.community"
                " JOIN ix_keys ka ON ka.k = p.author"
            )
        out[table] = db.execute(f"SELECT {cols} FROM {source} ORDER BY {order}").fetchall()
    return out


def check(w: World) -> None:
    home, c = w.home, w.c
    want = direct.thread(home, c)
    w.share()
    rc = cm.resolve(w.reader, c.hex)
    assert feed.thread(w.reader, rc) == direct.thread(w.reader, rc) == want
    before = index_rows(w.reader)
    index.rebuild(w.reader.docs, c.id)
    assert index_rows(w.reader) == before
    assert feed.thread(home, c) == want
    assert feed.all_posts(home, c) == direct.collect(home, c)
    assert list(feed.stream(home, c)) == want
    for last in (1, 3):
        shown, older = feed.latest(home, c, last)
        assert shown == want[-last:]
        assert older == max(0, len(want) - last)
    assert chat.messages(home, c) == direct.chat_messages(home, c)
    for p in feed.all_posts(home, c):
        assert content.find_post(home, c, p["id"])["id"] == p["id"]
    before = index_rows(home)
    index.rebuild(home.docs, c.id)
    assert index_rows(home) == before  # incremental updates equal a rebuild


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(action, min_size=1, max_size=25))
def test_views_from_index_equal_views_from_documents(script) -> None:  # noqa: ANN001
    with tempfile.TemporaryDirectory() as tmp:
        w = World(Path(tmp))
        try:
            for n, step in enumerate(script):
                w.play(*step)
                if n % 4 == 3:
                    w.share()
            check(w)
        finally:
            w.home.close()
            w.reader.close()


def test_latest_chat_messages_are_the_tail_of_all(tmp_path: Path) -> None:
    w = World(tmp_path)
    try:
        for i in range(12):
            w.play("chat", i % WRITERS, 1000 + i, i)
        w.play("ban", 1, 0, 0)
        every = chat.messages(w.home, w.c, "general")
        assert every and all(m["author"] != w.ids[1].public_key.hex() for m in every)
        for last in (1, 3, 50):
            assert chat.messages(w.home, w.c, "general", last=last) == every[-last:]
    finally:
        w.home.close()
        w.reader.close()


def test_a_cycle_found_on_first_use_is_threaded_the_careful_way(tmp_path: Path) -> None:
    """A store from before the indexes, holding a reply cycle: the first view indexes it,
    sees the cycle and threads as ever."""
    w = World(tmp_path)
    try:
        for step in [("post", 1, 1, 0), ("post", 1, 2, 0), ("reparent", 1, 0, 1)]:
            w.play(*step)
        w.play("reparent", 1, 1, 0)
        with w.home.store.transaction() as db:
            for table in index.update.TABLES + ("ix_flags", "ix_docs", "ix_bad"):
                db.execute(f"DELETE FROM {table}")
        want = direct.thread(w.home, w.c)
        assert feed.latest(w.home, w.c, 5) == (want, 0)
        assert index.flags(w.home.store.db, w.c.id) == {"cycle"}
    finally:
        w.home.close()
        w.reader.close()
