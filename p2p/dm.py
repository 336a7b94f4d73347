"""Direct messages: sealed with age to the recipient (and to the sender, so
they can read what they sent), stored in the sender's own `dm` document.

The document travels with the community like any other, so a message reaches
its recipient through whoever carries the community (sticks, relays), while
only the two people can read it. The sealed box names no recipient (age
stanzas do not), so other members learn only that the sender wrote a direct
message, when, and its size. Inside the box, the sender's and recipient's
keys and the community id are repeated and checked on reading, so a box
copied into someone else's document is not shown as theirs.
"""

from __future__ import annotations

import os
import time

import msgpack
import pyrage
from automerge.core import ROOT, Document, ObjType, ScalarType
from pyrage import x25519

from p2p.community import Community, profile
from p2p.content import MAX_TEXT, _may_write, check_text, post_id
from p2p.docref import DM, DocRef
from p2p.documents import get_obj, put_int, to_py
from p2p.errors import NotAllowed, UnknownPeer
from p2p.home import Home
from p2p.identity import fingerprint
from p2p.index.entries import MAX_TS
from p2p.index.view import View

MAX_BOX = MAX_TEXT + 4096  # age header and stanzas for two recipients, msgpack framing


def dm_ref(community: Community, author: bytes) -> DocRef:
    return DocRef(community.id, DM, author)


def recipient_key(home: Home, community: Community, member: bytes) -> x25519.Recipient:
    published = profile(home, community, member).get("age")
    if not isinstance(published, str):
        raise UnknownPeer(
            f"{fingerprint(member)} has not published an encryption key in this community "
            "yet; they need to sync once with this version of p2p"
        )
    try:
        return x25519.Recipient.from_str(published)
    except Exception as exc:
        raise UnknownPeer(f"{fingerprint(member)}'s published encryption key is damaged") from exc


def send(home: Home, community: Community, member: bytes, text: str) -> dict:
    check_text(text, "message")
    me = home.public_key
    if member == me:
        raise NotAllowed("that is you; a direct message needs someone else")
    to = recipient_key(home, community, member)
    _may_write(home, community)  # also publishes our key, so they can answer
    now = int(time.time() * 1000)
    plain = msgpack.packb(
        {"v": 1, "from": me, "to": member, "community": community.id, "text": text, "ts": now}
    )
    mine = x25519.Recipient.from_str(home.public_identity().age_recipient)
    box = pyrage.encrypt(plain, [to, mine])
    local = os.urandom(8).hex()

    def edit(doc: Document, tx) -> None:  # noqa: ANN001
        boxes = get_obj(doc, ROOT, "boxes")
        if boxes is None:
            boxes = tx.put_object(ROOT, "boxes", ObjType.Map)
        m = tx.put_object(boxes, local, ObjType.Map)
        tx.put(m, "box", ScalarType.Bytes, box)
        put_int(tx, m, "ts", now)

    home.docs.write(dm_ref(community, me), home.identity, edit)
    return {"id": post_id(me, local), "to": member.hex(), "text": text, "ts": now}


def open_box(home: Home, community: Community, owner: bytes, box: object) -> dict | None:
    """The message in a box if it is for (or from) us and consistent, else None."""
    if not isinstance(box, bytes) or len(box) > MAX_BOX:
        return None
    try:
        plain = pyrage.decrypt(box, [home.identity.age_identity])
        m = msgpack.unpackb(plain, raw=False, max_bin_len=64, max_str_len=MAX_TEXT)
    except Exception:  # noqa: BLE001 - not for us, or not a message: not shown
        return None
    me = home.public_key
    if not isinstance(m, dict) or m.get("v") != 1:
        return None
    sender, to = m.get("from"), m.get("to")
    if sender != owner or m.get("community") != community.id or me not in (sender, to):
        return None  # a box copied from elsewhere: not shown as this author's
    if not isinstance(to, bytes) or not isinstance(m.get("text"), str):
        return None
    ts = m.get("ts", 0)
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts <= MAX_TS:
        return None  # a time no one can show: a hostile box
    return {"from": sender, "to": to, "text": m["text"], "ts": ts}


def messages(home: Home, community: Community, member: bytes | None = None) -> list[dict]:
    """Direct messages to and from us (with one member, or all), in time order.

    The boxes come from the index; each is tried with our key (only ours open)."""
    view = View(home.docs, community.id)
    me = home.public_key
    out = []
    for owner, local, box in view.db.execute(
        "SELECT author, local, box FROM ix_dm WHERE community = ? ORDER BY author, local",
        (community.id,),
    ):
        if owner in view.banned:
            continue
        m = open_box(home, community, owner, box)
        if m is None:
            continue
        other = m["to"] if m["from"] == me else m["from"]
        if member is not None and other != member:
            continue
        out.append(
            {
                "id": post_id(owner, local),
                "from": m["from"].hex(),
                "to": m["to"].hex(),
                "with": other.hex(),
                "with_name": view.names.get(other, ""),
                "with_fingerprint": fingerprint(other),
                "sent": m["from"] == me,
                "text": m["text"],
                "ts": m["ts"],
            }
        )
    return sorted(out, key=lambda m: (m["ts"], m["id"]))


def count_for_me(
    home: Home, community: Community, doc_id: bytes, owner: bytes, keys: set[str]
) -> int:
    """How many of the boxes `keys` of one dm document are messages to us."""
    doc = home.docs.load(doc_id)
    boxes = (to_py(doc) if doc is not None else {}).get("boxes") or {}
    me = home.public_key
    n = 0
    for k in keys:
        entry = boxes.get(k)
        m = open_box(home, community, owner, entry.get("box")) if isinstance(entry, dict) else None
        if m is not None and m["to"] == me and m["from"] != me:
            n += 1
    return n
