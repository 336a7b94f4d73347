"""Communities: creating and leaving them, members, profiles, roles, settings, moderation.

A community is named by a self-certifying id (a hash of its owner's key and a
salt) and has one shared document holding its settings, roles, bans and
hidden posts. Only the owner and moderators may sign changes to it; the
acceptance path checks that against the roles as they stood when each change
was made.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from automerge.core import ROOT, Document, ObjType

from p2p.docref import COMMUNITY, PROFILE, DocRef, community_id
from p2p.documents import get_obj, need_obj, put_int, put_str, to_py
from p2p.errors import (
    AmbiguousId,
    NotAllowed,
    P2PError,
    UnknownCommunity,
    UnknownPeer,
    UnknownPost,
)
from p2p.home import Home
from p2p.identity import fingerprint

ROLES = ("owner", "moderator", "member")


@dataclass(frozen=True)
class Community:
    id: bytes
    owner: bytes
    salt: bytes
    private: bool
    secret: str | None  # age secret key of a private community
    name: str

    @property
    def hex(self) -> str:
        return self.id.hex()

    @property
    def ref(self) -> DocRef:
        return DocRef(self.id, COMMUNITY, self.owner)

    @property
    def recipient(self) -> str | None:
        if not self.secret:
            return None
        from pyrage import x25519

        return str(x25519.Identity.from_str(self.secret).to_public())


def _row(row: tuple) -> Community:
    return Community(row[0], row[1], row[2], bool(row[3]), row[4], row[5])


_COLUMNS = "id, owner, salt, private, secret, name"


def all_communities(home: Home) -> list[Community]:
    rows = home.store.db.execute(f"SELECT {_COLUMNS} FROM communities ORDER BY joined, id")
    return [_row(r) for r in rows]


def resolve(home: Home, text: str) -> Community:
    """Find a joined community by id, id prefix or exact name."""
    text = text.strip().lower()
    found = [c for c in all_communities(home) if c.hex.startswith(text) and len(text) >= 4]
    if not found:
        found = [
            c for c in all_communities(home) if settings(home, c).get("name", "").lower() == text
        ]
    if not found:
        raise UnknownCommunity(f"no joined community matches {text!r}: see 'p2p community list'")
    if len(found) > 1:
        raise AmbiguousId(f"{text!r} matches {len(found)} communities: give more of the id")
    return found[0]


def create(home: Home, name: str, private: bool = False, description: str = "") -> Community:
    me = home.identity
    salt = os.urandom(16)
    cid = community_id(me.public_key, salt)
    secret = None
    if private:
        from pyrage import x25519

        secret = str(x25519.Identity.generate())
    community = Community(cid, me.public_key, salt, private, secret, name)
    with home.store.transaction() as db:
        insert(db, community)

        def genesis(doc: Document, tx) -> None:  # noqa: ANN001
            s = tx.put_object(ROOT, "settings", ObjType.Map)
            put_str(tx, s, "name", name)
            put_str(tx, s, "description", description)
            put_str(tx, s, "rules", "")
            roles = tx.put_object(ROOT, "roles", ObjType.Map)
            put_str(tx, roles, me.public_key.hex(), "owner")
            tx.put_object(ROOT, "bans", ObjType.Map)
            tx.put_object(ROOT, "hidden", ObjType.Map)
            put_int(tx, ROOT, "created", int(time.time() * 1000))

        home.docs.write(community.ref, me, genesis)
        publish_profile(home, community)
    return community


def insert(db: Any, community: Community) -> None:
    """Record a community this home now belongs to (inside the caller's transaction)."""
    c = community
    db.execute(
        f"INSERT INTO communities ({_COLUMNS}, joined) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (c.id, c.owner, c.salt, int(c.private), c.secret, c.name, int(time.time())),
    )


def community_doc(home: Home, community: Community) -> Document | None:
    return home.docs.load(community.ref.id)


def settings(home: Home, community: Community) -> dict:
    doc = community_doc(home, community)
    if doc is None:
        return {"name": community.name, "description": "", "rules": ""}
    data = to_py(doc)
    return data.get("settings", {"name": community.name})


def state(home: Home, community: Community) -> dict:
    """Settings, roles, bans and hidden posts as plain data."""
    doc = community_doc(home, community)
    data = to_py(doc) if doc is not None else {}
    return {
        "settings": data.get("settings", {"name": community.name}),
        "roles": data.get("roles", {}),
        "bans": data.get("bans", {}),
        "hidden": data.get("hidden", {}),
    }


def role(home: Home, community: Community, member: bytes) -> str:
    if member == community.owner:
        return "owner"
    from p2p.accept import role_of  # acceptance is heavy; most commands never ask a role

    got, banned = role_of(community_doc(home, community), member)
    if banned:
        return "banned"
    return got if got in ROLES else "member"


def _require_moderator(home: Home, community: Community) -> None:
    if role(home, community, home.public_key) not in ("owner", "moderator"):
        raise NotAllowed("only the owner and moderators of this community may do that")


def _edit_shared(home: Home, community: Community, edit) -> None:  # noqa: ANN001
    _require_moderator(home, community)
    home.docs.write(community.ref, home.identity, edit)


def update_settings(home: Home, community: Community, **values: str | None) -> None:
    def edit(doc: Document, tx) -> None:  # noqa: ANN001
        obj = need_obj(doc, ROOT, "settings")
        for key, value in values.items():
            if value is not None:
                put_str(tx, obj, key, value)

    _edit_shared(home, community, edit)
    if values.get("name"):
        with home.store.transaction() as db:
            db.execute(
                "UPDATE communities SET name = ? WHERE id = ?", (values["name"], community.id)
            )


def set_role(home: Home, community: Community, member: bytes, new_role: str) -> None:
    if new_role not in ("moderator", "member"):
        raise ValueError("role must be moderator or member")
    if member == community.owner:
        raise NotAllowed("the owner's role is fixed by the community id and cannot change")

    def edit(doc: Document, tx) -> None:  # noqa: ANN001
        put_str(tx, need_obj(doc, ROOT, "roles"), member.hex(), new_role)

    _edit_shared(home, community, edit)


def ban(home: Home, community: Community, member: bytes) -> None:
    if member == community.owner:
        raise NotAllowed("the owner cannot be banned")

    def edit(doc: Document, tx) -> None:  # noqa: ANN001
        put_int(tx, need_obj(doc, ROOT, "bans"), member.hex(), int(time.time() * 1000))

    _edit_shared(home, community, edit)


def hide(home: Home, community: Community, post_id: str) -> None:
    def edit(doc: Document, tx) -> None:  # noqa: ANN001
        put_int(tx, need_obj(doc, ROOT, "hidden"), post_id, int(time.time() * 1000))

    _edit_shared(home, community, edit)


def _unset(home: Home, community: Community, table: str, key: str, missing: P2PError) -> None:
    _require_moderator(home, community)
    doc = community_doc(home, community)
    obj = get_obj(doc, ROOT, table) if doc is not None else None
    if doc is None or obj is None or doc.get(obj, key) is None:
        raise missing

    def edit(doc: Document, tx) -> None:  # noqa: ANN001
        tx.delete(get_obj(doc, ROOT, table), key)

    _edit_shared(home, community, edit)


def unban(home: Home, community: Community, member: bytes) -> None:
    """Lift a ban: the member's posts, kept all along, show again."""
    _unset(home, community, "bans", member.hex(), UnknownPeer("that member is not banned"))


def unhide(home: Home, community: Community, post_id: str) -> None:
    _unset(home, community, "hidden", post_id, UnknownPost("that post is not hidden"))


def leave(home: Home, community: Community) -> int:
    """Remove everything of a community from this device, in one transaction:
    its key, documents, signatures, pending changes, what peers held of it and
    the record of bundles written for it. SQLite's secure_delete overwrites the
    freed pages and the write-ahead log is truncated, so the data does not stay
    readable in the database files (flash storage may keep old copies: a
    device-level limit). Returns the number of documents removed."""
    ids = sorted(
        {
            r[0]
            for r in home.store.db.execute(
                "SELECT id FROM docs WHERE community = ? UNION SELECT doc FROM pending"
                " WHERE community = ?",
                (community.id, community.id),
            )
        }
    )
    from p2p.index import forget_community  # the index package is only needed here

    home.store.db.execute("PRAGMA secure_delete = ON")
    with home.store.transaction() as db:
        for table in ("changes", "sigs", "pending_sigs", "peer_heads", "forks", "forks_held"):
            db.executemany(f"DELETE FROM {table} WHERE doc = ?", [(i,) for i in ids])
        db.execute("DELETE FROM set_aside WHERE community = ?", (community.id,))
        db.execute("DELETE FROM pending WHERE community = ?", (community.id,))
        db.execute("DELETE FROM docs WHERE community = ?", (community.id,))
        db.execute("DELETE FROM bundles_written WHERE domain = ?", (community.hex,))
        db.execute("DELETE FROM communities WHERE id = ?", (community.id,))
        forget_community(db, community.id)  # the derived indexes hold its text too
    home.docs.forget()
    home.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    home.store.db.execute("VACUUM")
    return len(ids)


# --- members ------------------------------------------------------------------


def members(home: Home, community: Community) -> list[bytes]:
    """Everyone known to take part: owner, anyone with a role, any author."""
    keys = {community.owner}
    keys.update(bytes.fromhex(k) for k in state(home, community)["roles"])
    keys.update(
        r[0]
        for r in home.store.db.execute(
            "SELECT DISTINCT owner FROM docs WHERE community = ? AND kind != ?",
            (community.id, COMMUNITY),
        )
    )
    return sorted(keys)


def profile(home: Home, community: Community, member: bytes) -> dict:
    doc = home.docs.load(DocRef(community.id, PROFILE, member).id)
    return to_py(doc) if doc is not None else {}


def display_name(home: Home, community: Community, member: bytes) -> str:
    """The name a member chose (from the index: no document is loaded)."""
    from p2p.index.view import name

    return name(home.docs, community.id, member)


def resolve_member(home: Home, community: Community, text: str) -> bytes:
    """A member by fingerprint (prefix), public key hex (prefix) or display name."""
    wanted = text.strip().upper().replace("-", "")
    found = []
    for key in members(home, community):
        fp = fingerprint(key).replace("-", "")
        if (
            len(wanted) >= 4 and (fp.startswith(wanted) or key.hex().upper().startswith(wanted))
        ) or (display_name(home, community, key).upper() == text.strip().upper()):
            found.append(key)
    if not found:
        raise UnknownPeer(f"no member of this community matches {text!r}")
    if len(found) > 1:
        raise AmbiguousId(f"{text!r} matches {len(found)} members: give more of the fingerprint")
    return found[0]


# --- profiles -----------------------------------------------------------------


def set_profile(home: Home, name: str | None, bio: str | None) -> None:
    current = home.meta("profile") or {}
    assert isinstance(current, dict)
    if name is not None:
        current["name"] = name
    if bio is not None:
        current["bio"] = bio
    home.set_meta("profile", current)
    for community in all_communities(home):
        publish_profile(home, community)


def publish_profile(home: Home, community: Community, writing: bool = False) -> None:
    """Our name and bio, and the age key others seal direct messages to.

    Someone who set no name and writes nothing publishes nothing: joining
    alone leaves no trace for others to sync. The first write publishes the key.
    """
    chosen = home.meta("profile") or {}
    assert isinstance(chosen, dict)
    if not chosen and not writing:
        return
    wanted = {**chosen, "age": home.public_identity().age_recipient}
    have = profile(home, community, home.public_key)
    if all(have.get(k) == v for k, v in wanted.items()):
        return

    def edit(doc: Document, tx) -> None:  # noqa: ANN001
        for key, value in wanted.items():
            put_str(tx, ROOT, key, value)

    home.docs.write(DocRef(community.id, PROFILE, home.public_key), home.identity, edit)
