"""The views as they were computed before the indexes: straight from the documents.

An oracle for the index tests (p2p/feed.py and p2p/chat.py at 878248f, reading
every document), with one difference the indexes introduced on purpose: entries
of the wrong type are skipped (before, most of them crashed the view).
"""

from __future__ import annotations

from typing import Any

from p2p.blobs.attach import describe_all
from p2p.community import Community, profile
from p2p.docref import CHAT, COMMUNITY, FEED
from p2p.documents import to_py
from p2p.feed import _placement, _prune
from p2p.home import Home
from p2p.identity import fingerprint

MAX_TS = 253_402_300_799_999


def _time_ok(entry: dict, key: str, missing_ok: bool) -> bool:
    if key not in entry or (key == "edited" and entry[key] is None):
        return missing_ok
    v = entry[key]
    return type(v) is int and 0 <= v <= MAX_TS


def sane_post(p: Any) -> bool:
    return (
        isinstance(p, dict)
        and isinstance(p.get("text", ""), str)
        and (p.get("parent") is None or isinstance(p.get("parent"), str))
        and _time_ok(p, "ts", True)
        and _time_ok(p, "edited", True)
    )


def _hexes(table: Any) -> set[bytes]:
    out = set()
    for k in table if isinstance(table, dict) else {}:
        try:
            out.add(bytes.fromhex(k))
        except (ValueError, TypeError):
            pass
    return out


def state(home: Home, community: Community) -> dict:
    doc = home.docs.load(community.ref.id)
    data = to_py(doc) if doc is not None else {}
    hidden = data.get("hidden", {})
    hidden = set(hidden) if isinstance(hidden, dict) else set()
    return {"bans": _hexes(data.get("bans", {})), "hidden": hidden}


def name(home: Home, community: Community, owner: bytes) -> str:
    n = profile(home, community, owner).get("name")
    return n if isinstance(n, str) else ""


def _docs(home: Home, community: Community, kind: str) -> list[tuple[bytes, dict]]:
    rows = home.store.db.execute(
        "SELECT id, owner FROM docs WHERE community = ? AND kind = ? ORDER BY owner",
        (community.id, kind),
    ).fetchall()
    return [(owner, to_py(home.docs.load(doc_id))) for doc_id, owner in rows]


def collect(home: Home, community: Community) -> list[dict]:
    shared = state(home, community)
    banned, hidden = shared["bans"], shared["hidden"]
    posts: dict[str, dict] = {}
    reactions: list[tuple[bytes, str, str]] = []
    for owner, data in _docs(home, community, FEED):
        table = data.get("posts") or {}
        for local, p in (table if isinstance(table, dict) else {}).items():
            if not sane_post(p):
                continue
            pid = owner[:4].hex() + local
            posts[pid] = {
                "id": pid,
                "author": owner.hex(),
                "author_name": name(home, community, owner),
                "fingerprint": fingerprint(owner),
                "text": p.get("text", ""),
                "ts": p.get("ts", 0),
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
            continue
        table = data.get("reactions") or {}
        for target, emojis in (table if isinstance(table, dict) else {}).items():
            if isinstance(emojis, dict):
                reactions += [(owner, target, e) for e in emojis]
    for reactor, target, emoji in reactions:
        if target in posts:
            posts[target]["reactions"].setdefault(emoji, []).append(reactor.hex())
    return sorted(posts.values(), key=lambda p: (p["ts"], p["id"]))


def thread(home: Home, community: Community) -> list[dict]:
    by_id = {p["id"]: {**p, "replies": []} for p in collect(home, community)}
    under = _placement(by_id)
    roots = []
    for pid, p in by_id.items():
        if under[pid] is None:
            roots.append(p)
        else:
            by_id[under[pid]]["replies"].append(p)
    return _prune(roots)


def chat_messages(home: Home, community: Community) -> list[dict]:
    shared = state(home, community)
    out = []
    for owner, data in _docs(home, community, CHAT):
        if owner in shared["bans"]:
            continue
        table = data.get("messages") or {}
        for local, m in (table if isinstance(table, dict) else {}).items():
            mid = owner[:4].hex() + local
            if not isinstance(m, dict) or mid in shared["hidden"]:
                continue
            room, text = m.get("room", "general"), m.get("text", "")
            typed = isinstance(room, str) and isinstance(text, str)
            if not typed or not _time_ok(m, "ts", True):
                continue
            out.append(
                {
                    "id": mid,
                    "room": room,
                    "author": owner.hex(),
                    "author_name": name(home, community, owner),
                    "fingerprint": fingerprint(owner),
                    "text": text,
                    "ts": m.get("ts", 0),
                    "attachments": describe_all(home, m.get("attachments")),
                }
            )
    return sorted(out, key=lambda m: (m["ts"], m["id"]))


assert COMMUNITY  # the shared document is read through state()
