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

from p2p.community import Community
from p2p.content import _may_write, check_text, post_id, put_attachments
from p2p.docref import CHAT, DocRef
from p2p.documents import get_obj, put_int, put_str
from p2p.home import Home
from p2p.identity import fingerprint
from p2p.index.entries import unpack_attachments
from p2p.index.view import View

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
    home: Home,
    community: Community,
    room: str | None = None,
    moderated: bool = True,
    last: int | None = None,
) -> list[dict]:
    """Messages in time order (one room, or all), as moderation leaves them (from the index);
    only the `last` most recent when given (read newest first: cost of what is shown)."""
    view = View(home.docs, community.id)
    banned = view.banned if moderated else set()
    hidden = view.hidden if moderated else set()
    wanted = check_room(room) if room is not None else None
    sql = "SELECT author, id, room, text, ts, attachments FROM ix_chat WHERE community = ?"
    args: list[object] = [community.id]
    if wanted is not None:
        sql += " AND room = ?"
        args.append(wanted)
    if last is not None:
        sql += " ORDER BY ts DESC, id DESC"
    out: list[dict] = []
    for owner, mid, in_room, text, ts, attached in view.db.execute(sql, args):
        if owner in banned or mid in hidden:
            continue
        if last is not None and len(out) >= last:
            break
        out.append(
            {
                "id": mid,
                "room": in_room,
                "author": owner.hex(),
                "author_name": view.names.get(owner, ""),
                "fingerprint": fingerprint(owner),
                "text": text,
                "ts": ts,
                "attachments": _attachments(home, attached),
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


def _attachments(home: Home, attached: bytes | None) -> list[dict]:
    raw = unpack_attachments(attached)
    if not raw:
        return []
    from p2p.blobs.attach import describe_all  # image support loads only when needed

    return describe_all(home, raw)


def find_message(home: Home, community: Community, wanted: str) -> dict | None:
    """A message by id or unique prefix (at least 4 characters), or None."""
    from p2p.index.view import prefix_rows

    wanted = wanted.strip().lower()
    if len(wanted) < 4:
        return None
    view = View(home.docs, community.id)
    rows = prefix_rows(view, "ix_chat", wanted, 2)
    if len(rows) != 1:
        return None
    owner, _local, mid, room, text, ts, attached = rows[0]
    return {
        "id": mid,
        "room": room,
        "author": owner.hex(),
        "author_name": view.names.get(owner, ""),
        "fingerprint": fingerprint(owner),
        "text": text,
        "ts": ts,
        "attachments": _attachments(home, attached),
    }
