"""Group chat: rooms inside a community, each message in its author's own
`chat` document (so, as with posts, no one can alter another's messages).

A room is just a name carried by each message; a room exists once someone has
written in it. Views leave out messages of banned members and messages a
moderator hid (message ids share the hidden-post list).
"""

from __future__ import annotations

import os
import time

from automerge.core import ROOT, Document, ObjType

from p2p.blobs.attach import describe_all
from p2p.community import Community, display_name, state
from p2p.content import _may_write, check_text, post_id, put_attachments
from p2p.docref import CHAT, DocRef
from p2p.documents import get_obj, put_int, put_str, to_py
from p2p.home import Home
from p2p.identity import fingerprint

DEFAULT_ROOM = "general"
MAX_ROOM = 64


def chat_ref(community: Community, author: bytes) -> DocRef:
    return DocRef(community.id, CHAT, author)


def check_room(room: str) -> str:
    room = room.strip().lstrip("#").lower()
    if not room or len(room.encode()) > MAX_ROOM or any(c.isspace() for c in room):
        raise ValueError(f"a room name is one word of at most {MAX_ROOM} bytes")
    return room


def send(
    home: Home,
    community: Community,
    text: str,
    room: str = DEFAULT_ROOM,
    attachments: list[dict] | None = None,
) -> dict:
    if not (attachments and not text.strip()):
        check_text(text, "message")
    room = check_room(room)
    _may_write(home, community)
    local = os.urandom(8).hex()
    now = int(time.time() * 1000)

    def edit(doc: Document, tx) -> None:  # noqa: ANN001
        messages = get_obj(doc, ROOT, "messages")
        if messages is None:
            messages = tx.put_object(ROOT, "messages", ObjType.Map)
        m = tx.put_object(messages, local, ObjType.Map)
        put_str(tx, m, "room", room)
        put_str(tx, m, "text", text)
        put_int(tx, m, "ts", now)
        put_attachments(tx, m, attachments or [])

    me = home.public_key
    home.docs.write(chat_ref(community, me), home.identity, edit)
    out = {"id": post_id(me, local), "room": room, "text": text, "author": me.hex(), "ts": now}
    if attachments:
        out["attachments"] = [{"hash": a["id"].hex(), "name": a["name"]} for a in attachments]
    return out


def messages(
    home: Home, community: Community, room: str | None = None, moderated: bool = True
) -> list[dict]:
    """Messages in time order (one room, or all), as moderation leaves them."""
    shared = state(home, community)
    banned = {bytes.fromhex(k) for k in shared["bans"]} if moderated else set()
    hidden = set(shared["hidden"]) if moderated else set()
    wanted = check_room(room) if room is not None else None
    out = []
    rows = home.store.db.execute(
        "SELECT id, owner FROM docs WHERE community = ? AND kind = ?", (community.id, CHAT)
    ).fetchall()
    for doc_id, owner in rows:
        if owner in banned:
            continue
        doc = home.docs.load(doc_id)
        data = to_py(doc) if doc is not None else {}
        name = display_name(home, community, owner)
        for local, m in (data.get("messages") or {}).items():
            mid = post_id(owner, local)
            if not isinstance(m, dict) or mid in hidden:
                continue
            in_room = str(m.get("room", DEFAULT_ROOM))
            if wanted is not None and in_room != wanted:
                continue
            out.append(
                {
                    "id": mid,
                    "room": in_room,
                    "author": owner.hex(),
                    "author_name": name,
                    "fingerprint": fingerprint(owner),
                    "text": str(m.get("text", "")),
                    "ts": int(m.get("ts", 0)),
                    "attachments": describe_all(home, m.get("attachments")),
                }
            )
    return sorted(out, key=lambda m: (m["ts"], m["id"]))


def rooms(home: Home, community: Community) -> list[dict]:
    """Every room with its message count and latest activity."""
    seen: dict[str, dict] = {}
    for m in messages(home, community):
        r = seen.setdefault(m["room"], {"room": m["room"], "messages": 0, "last": 0})
        r["messages"] += 1
        r["last"] = max(r["last"], m["ts"])
    return sorted(seen.values(), key=lambda r: -r["last"])


def find_message(home: Home, community: Community, wanted: str) -> dict | None:
    """A message by id or unique prefix (at least 6 characters), or None."""
    wanted = wanted.strip().lower()
    if len(wanted) < 6:
        return None
    found = [m for m in messages(home, community, moderated=False) if m["id"].startswith(wanted)]
    return found[0] if len(found) == 1 else None
