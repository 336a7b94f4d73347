"""A community as a reader sees it: the merge of its members' feeds, threaded,
minus what moderators hid and what banned members wrote.

The signed data stays in the store; hiding and banning only change this view.
"""

from __future__ import annotations

from p2p.community import Community, display_name, state
from p2p.docref import FEED
from p2p.documents import to_py
from p2p.home import Home
from p2p.identity import fingerprint


def _feed_docs(home: Home, community: Community) -> list[tuple[bytes, dict]]:
    rows = home.store.db.execute(
        "SELECT id, owner FROM docs WHERE community = ? AND kind = ? ORDER BY owner",
        (community.id, FEED),
    ).fetchall()
    out = []
    for doc_id, owner in rows:
        doc = home.docs.load(doc_id)
        if doc is not None:
            out.append((owner, to_py(doc)))
    return out


def all_posts(home: Home, community: Community, moderated: bool = False) -> list[dict]:
    """Every post as a flat list (unmoderated unless asked), reactions attached."""
    shared = state(home, community)
    banned = {bytes.fromhex(k) for k in shared["bans"]} if moderated else set()
    hidden = set(shared["hidden"]) if moderated else set()
    names: dict[bytes, str] = {}
    posts: dict[str, dict] = {}
    reactions: list[tuple[bytes, str, str]] = []
    for owner, data in _feed_docs(home, community):
        if owner in banned:
            continue
        if owner not in names:
            names[owner] = display_name(home, community, owner)
        for local, p in (data.get("posts") or {}).items():
            pid = owner[:4].hex() + local
            if pid in hidden or not isinstance(p, dict):
                continue
            posts[pid] = {
                "id": pid,
                "author": owner.hex(),
                "author_name": names[owner],
                "fingerprint": fingerprint(owner),
                "text": str(p.get("text", "")),
                "ts": int(p.get("ts", 0)),
                "parent": p.get("parent"),
                "edited": p.get("edited"),
                "deleted": p.get("deleted") is not None,
                "reactions": {},
            }
        for target, emojis in (data.get("reactions") or {}).items():
            if isinstance(emojis, dict):
                reactions += [(owner, target, e) for e in emojis]
    for reactor, target, emoji in reactions:
        if target in posts:
            posts[target]["reactions"].setdefault(emoji, []).append(reactor.hex())
    return sorted(posts.values(), key=lambda p: (p["ts"], p["id"]))


def thread(home: Home, community: Community) -> list[dict]:
    """Top-level posts in time order, each with its `replies` nested."""
    posts = all_posts(home, community, moderated=True)
    by_id = {p["id"]: {**p, "replies": []} for p in posts}
    roots = []
    for p in by_id.values():
        parent = p["parent"]
        if parent and parent in by_id:
            by_id[parent]["replies"].append(p)
        else:
            roots.append(p)
    return roots


def shared_state(home: Home, community: Community) -> dict:
    return state(home, community)


def author_doc(home: Home, doc_id: bytes) -> dict:
    doc = home.docs.load(doc_id)
    return to_py(doc) if doc is not None else {}
