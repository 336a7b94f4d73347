"""Posts, replies, reactions, edits and deletions, all in the author's own feed.

Each author writes only their own feed document, so no one can alter another's
posts; a reaction to someone else's post is kept in the reactor's feed. A post
id is the first four bytes of the author's key plus a random part, and views
derive the prefix from the document's owner, so a post can never pass for
another author's.
"""

from __future__ import annotations

import os
import time

from automerge.core import ROOT, Document, ObjType, ScalarType

from p2p.community import Community, publish_profile, role
from p2p.docref import FEED, DocRef
from p2p.documents import get_obj, need_obj, put_int, put_str, to_py
from p2p.errors import NotAllowed, PostDeleted, UnknownPost
from p2p.home import Home

MAX_TEXT = 64 * 1024
MAX_EMOJI = 32


def post_id(owner: bytes, local: str) -> str:
    return owner[:4].hex() + local


def feed_ref(community: Community, author: bytes) -> DocRef:
    return DocRef(community.id, FEED, author)


def _ensure_roots(doc: Document, tx) -> tuple[bytes, bytes]:  # noqa: ANN001
    posts = get_obj(doc, ROOT, "posts")
    reactions = get_obj(doc, ROOT, "reactions")
    if posts is None:
        posts = tx.put_object(ROOT, "posts", ObjType.Map)
    if reactions is None:
        reactions = tx.put_object(ROOT, "reactions", ObjType.Map)
    return posts, reactions


def _may_write(home: Home, community: Community) -> None:
    if role(home, community, home.public_key) == "banned":
        raise NotAllowed("you are banned from this community; your posts would not be shown")
    publish_profile(home, community, writing=True)


def check_text(text: str, what: str = "post") -> None:
    if not text.strip():
        raise ValueError(f"a {what} needs some text")
    if len(text.encode()) > MAX_TEXT:
        raise ValueError(f"a {what} is limited to {MAX_TEXT // 1024} KiB of text")


MIN_PREFIX = 4  # as for every id; the first 8 characters of a post id name its author


def find_post(home: Home, community: Community, wanted: str) -> dict:
    """A post of this community by id or unique id prefix (at least 4 characters).

    Read from the index: a range scan of the ids starting with `wanted`, never a
    load of anyone's feed."""
    from p2p.blobs.attach import describe_all
    from p2p.index.view import View, prefix_rows

    wanted = wanted.strip().lower()
    if len(wanted) < MIN_PREFIX:
        raise UnknownPost(f"give at least {MIN_PREFIX} characters of the post id")
    view = View(home.docs, community.id)
    rows = prefix_rows(view, "ix_posts", wanted, 2)
    if not rows:
        raise UnknownPost(f"no post {wanted!r} in this community")
    exact = [r for r in rows if r[2] == wanted]
    if len({r[2] for r in rows}) > 1 and not exact:
        raise UnknownPost(f"{wanted!r} matches several posts: give more of the id")
    # of two posts with one id, the later author's (authors compare as keys)
    chosen = max(exact or rows, key=lambda r: view.member[r[0]])
    post = view.post(chosen)
    post["attachments"] = describe_all(home, post["attachments"]) if post["attachments"] else []
    view.react({post["id"]: post}, view.reactions([post["id"]]))
    return post


def put_attachments(tx, obj: bytes, attachments: list[dict]) -> None:  # noqa: ANN001
    """Write a post's attachment entries (see p2p.blobs.entries) into its map."""
    if not attachments:
        return
    items = tx.put_object(obj, "attachments", ObjType.List)
    for i, entry in enumerate(attachments):
        m = tx.insert_object(items, i, ObjType.Map)
        for key, value in entry.items():
            kind = {bytes: ScalarType.Bytes, int: ScalarType.Int, str: ScalarType.Str}
            tx.put(m, key, kind[type(value)], value)


def post(
    home: Home,
    community: Community,
    text: str,
    reply_to: str | None = None,
    attachments: list[dict] | None = None,
) -> dict:
    """Can raise NotAllowed, UnknownPost, ValueError (empty or too long text).
    `attachments`: entries from p2p.blobs.attach.add_files, as `.as_doc()` maps."""
    if not (attachments and not text.strip()):
        check_text(text)
    me = home.public_key
    parent = find_post(home, community, reply_to)["id"] if reply_to else None
    _may_write(home, community)
    local = os.urandom(8).hex()
    now = int(time.time() * 1000)

    def edit(doc: Document, tx) -> None:  # noqa: ANN001
        posts, _ = _ensure_roots(doc, tx)
        p = tx.put_object(posts, local, ObjType.Map)
        put_str(tx, p, "text", text)
        put_int(tx, p, "ts", now)
        if parent:
            put_str(tx, p, "parent", parent)
        put_attachments(tx, p, attachments or [])

    home.docs.write(feed_ref(community, me), home.identity, edit)
    out = {"id": post_id(me, local), "text": text, "author": me.hex(), "parent": parent, "ts": now}
    if attachments:
        out["attachments"] = [{"hash": a["id"].hex(), "name": a["name"]} for a in attachments]
    return out


def _own_post(home: Home, community: Community, wanted: str) -> tuple[dict, str]:
    target = find_post(home, community, wanted)
    if target["author"] != home.public_key.hex():
        raise NotAllowed("you can only edit or delete your own posts")
    return target, target["id"][8:]


def edit(home: Home, community: Community, wanted: str, text: str) -> dict:
    check_text(text)
    target, local = _own_post(home, community, wanted)
    if target.get("deleted"):
        raise PostDeleted(post=target["id"])
    now = int(time.time() * 1000)

    def change(doc: Document, tx) -> None:  # noqa: ANN001
        p = need_obj(doc, need_obj(doc, ROOT, "posts"), local)
        put_str(tx, p, "text", text)
        put_int(tx, p, "edited", now)

    home.docs.write(feed_ref(community, home.public_key), home.identity, change)
    return {**target, "text": text, "edited": now}


def delete(home: Home, community: Community, wanted: str) -> dict:
    """Blank the text and mark the post deleted; the history still holds it."""
    target, local = _own_post(home, community, wanted)
    now = int(time.time() * 1000)

    def change(doc: Document, tx) -> None:  # noqa: ANN001
        p = need_obj(doc, need_obj(doc, ROOT, "posts"), local)
        put_str(tx, p, "text", "")
        put_int(tx, p, "deleted", now)
        if get_obj(doc, p, "attachments") is not None:
            tx.delete(p, "attachments")

    home.docs.write(feed_ref(community, home.public_key), home.identity, change)
    return {**target, "text": "", "deleted": now}


def react(home: Home, community: Community, wanted: str, emoji: str, remove: bool = False) -> dict:
    if not emoji.strip() or len(emoji.encode()) > MAX_EMOJI:
        raise ValueError("a reaction is one short emoji or word")
    target = find_post(home, community, wanted)
    now = int(time.time() * 1000)
    if remove:
        mine = read_feed_doc(home, community, home.public_key).get("reactions", {})
        if emoji not in (mine.get(target["id"]) or {}):
            raise UnknownPost(f"you have not reacted {emoji} to that post")
    _may_write(home, community)

    def change(doc: Document, tx) -> None:  # noqa: ANN001
        _, reactions = _ensure_roots(doc, tx)
        mine = get_obj(doc, reactions, target["id"])
        if remove:
            tx.delete(mine, emoji)
            return
        if mine is None:
            mine = tx.put_object(reactions, target["id"], ObjType.Map)
        put_int(tx, mine, emoji, now)

    home.docs.write(feed_ref(community, home.public_key), home.identity, change)
    return {"id": target["id"], "emoji": emoji, "author": home.public_key.hex(), "removed": remove}


def read_feed_doc(home: Home, community: Community, author: bytes) -> dict:
    doc = home.docs.load(feed_ref(community, author).id)
    return to_py(doc) if doc is not None else {}
