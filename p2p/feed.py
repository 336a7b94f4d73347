"""A community as a reader sees it: the merge of its members' feeds, threaded,
minus what moderators hid and what banned members wrote.

The signed data stays in the store; hiding and banning only change this view.
"""

from __future__ import annotations

from p2p.blobs.attach import describe_all
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


def _collect(home: Home, community: Community) -> list[dict]:
    """Every post as a flat list, reactions attached, each marked with `removed`:
    None, "hidden" (by a moderator) or "banned" (its author is)."""
    shared = state(home, community)
    banned = {bytes.fromhex(k) for k in shared["bans"]}
    hidden = set(shared["hidden"])
    names: dict[bytes, str] = {}
    posts: dict[str, dict] = {}
    reactions: list[tuple[bytes, str, str]] = []
    for owner, data in _feed_docs(home, community):
        if owner not in names:
            names[owner] = display_name(home, community, owner)
        for local, p in (data.get("posts") or {}).items():
            if not isinstance(p, dict):
                continue
            pid = owner[:4].hex() + local
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
                "removed": "banned" if owner in banned else "hidden" if pid in hidden else None,
                "reactions": {},
                "attachments": []
                if p.get("deleted") is not None
                else describe_all(home, p.get("attachments")),
            }
        if owner in banned:
            continue  # a banned member's reactions are not counted
        for target, emojis in (data.get("reactions") or {}).items():
            if isinstance(emojis, dict):
                reactions += [(owner, target, e) for e in emojis]
    for reactor, target, emoji in reactions:
        if target in posts:
            posts[target]["reactions"].setdefault(emoji, []).append(reactor.hex())
    return sorted(posts.values(), key=lambda p: (p["ts"], p["id"]))


def all_posts(home: Home, community: Community, moderated: bool = False) -> list[dict]:
    """Every post as a flat list (unmoderated unless asked), reactions attached."""
    posts = _collect(home, community)
    return [p for p in posts if not p["removed"]] if moderated else posts


def _placeholder(p: dict) -> dict:
    """What stays of a removed post that others replied to: its place in the thread."""
    return {
        **p,
        "author": None,
        "author_name": None,
        "fingerprint": None,
        "text": "",
        "edited": None,
        "reactions": {},
        "attachments": [],
    }


MAX_DEPTH = 12  # deeper replies are shown beside their parent, not below it


def thread(home: Home, community: Community) -> list[dict]:
    """Top-level posts in time order, each with its `replies` nested.

    Hidden posts and posts by banned members are left out; where others replied
    to one, a placeholder (text empty, `removed` set) keeps the replies in their
    thread instead of scattering them to the top level. Nesting stops at
    MAX_DEPTH and a parent cycle (only a forger's own posts can form one) is cut,
    so no reply chain a member writes can break the view.
    """
    by_id = {p["id"]: {**p, "replies": []} for p in _collect(home, community)}
    under = _placement(by_id)
    roots = []
    for pid, p in by_id.items():
        if under[pid] is None:
            roots.append(p)
        else:
            by_id[under[pid]]["replies"].append(p)
    return _prune(roots)


def _placement(by_id: dict[str, dict]) -> dict[str, str | None]:
    """Which post each post is shown under (None: top level), and how deep."""
    under: dict[str, str | None] = {}
    depth: dict[str, int] = {}

    def parent(pid: str) -> str | None:
        par = by_id[pid]["parent"]
        return par if isinstance(par, str) and par in by_id else None

    for start in by_id:
        path: list[str] = []
        seen: set[str] = set()
        cur: str | None = start
        while cur is not None and cur not in depth:
            if cur in seen:  # a cycle: cut it here
                under[cur], depth[cur] = None, 0
                break
            seen.add(cur)
            path.append(cur)
            cur = parent(cur)
        for pid in reversed(path):
            if pid in depth:
                continue
            par = parent(pid)
            if par is None:
                under[pid], depth[pid] = None, 0
            elif depth[par] < MAX_DEPTH:
                under[pid], depth[pid] = par, depth[par] + 1
            else:
                under[pid], depth[pid] = under[par], depth[par]
    return under


def _prune(posts: list[dict]) -> list[dict]:
    out = []
    for p in posts:
        p["replies"] = _prune(p["replies"])
        if not p["removed"]:
            out.append(p)
        elif p["replies"]:
            out.append(_placeholder(p))
    return out


def shared_state(home: Home, community: Community) -> dict:
    return state(home, community)


def author_doc(home: Home, doc_id: bytes) -> dict:
    doc = home.docs.load(doc_id)
    return to_py(doc) if doc is not None else {}
