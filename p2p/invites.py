"""Invite files: how someone joins a community.

An invite carries the community's self-certifying descriptor (id, owner, salt),
its name, the signed community document, and for a private community its age
secret key. That key is why an invite can be sealed with a passphrase (age,
scrypt) for the trip; docs/core-model.md ("Invites") gives the format.
"""

from __future__ import annotations

import msgpack

from p2p.accept import from_record
from p2p.community import Community, all_communities, insert, publish_profile, settings
from p2p.docref import community_id
from p2p.errors import InvalidInvite, NotAMember
from p2p.exchange import full_record
from p2p.home import Home

INVITE_KIND = "p2p-invite-v1"
MAX_INVITE = 16 * 1024 * 1024
AGE_MAGIC = b"age-encryption.org/v1\n"


def write(home: Home, community: Community, passphrase: str | None = None) -> bytes:
    """An invite file's bytes; for a private community it holds the community key,
    which is why it can be sealed with a passphrase (age, scrypt) for the trip."""
    invite_obj = {
        "kind": INVITE_KIND,
        "id": community.id,
        "owner": community.owner,
        "salt": community.salt,
        "private": community.private,
        "name": settings(home, community).get("name", community.name),
        "secret": community.secret,
        "docs": [full_record(home, community.ref)],
    }
    data = msgpack.packb(invite_obj)
    if passphrase is None:
        return data
    from pyrage import passphrase as age_passphrase

    return age_passphrase.encrypt(data, passphrase)


def is_sealed(data: bytes) -> bool:
    return data.startswith(AGE_MAGIC)


def join(home: Home, data: bytes, passphrase: str | None = None) -> Community:
    if len(data) > MAX_INVITE:
        raise InvalidInvite("this invite file is far too large to be an invite")
    if is_sealed(data):
        if passphrase is None:
            raise InvalidInvite("this invite is sealed with a passphrase; none was given")
        from pyrage import passphrase as age_passphrase

        try:
            data = age_passphrase.decrypt(data, passphrase)
        except Exception as exc:
            raise InvalidInvite("the passphrase does not open this invite") from exc
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False, max_bin_len=MAX_INVITE)
        if not isinstance(obj, dict) or obj.get("kind") != INVITE_KIND:
            raise InvalidInvite()
        cid, owner, salt = bytes(obj["id"]), bytes(obj["owner"]), bytes(obj["salt"])
        private, name, secret = bool(obj["private"]), str(obj["name"]), obj.get("secret")
        records = list(obj.get("docs", []))
    except InvalidInvite:
        raise
    except Exception as exc:
        raise InvalidInvite() from exc
    if community_id(owner, salt) != cid:
        raise InvalidInvite("this invite's community id does not match its owner; it was altered")
    if private and not secret:
        raise NotAMember("this invite is for a private community but carries no key")
    if secret:
        from pyrage import x25519

        try:
            x25519.Identity.from_str(secret)
        except Exception as exc:
            raise InvalidInvite("this invite's community key is damaged") from exc
    existing = [c for c in all_communities(home) if c.id == cid]
    community = Community(cid, owner, salt, private, secret, name)
    if not existing:
        with home.store.transaction() as db:
            insert(db, community)
    incoming = []
    for record in records:
        try:
            incoming.append(from_record(record))
        except ValueError as exc:
            raise InvalidInvite(f"this invite's community document is damaged ({exc})") from exc
    home.acceptor().accept(incoming)
    publish_profile(home, community)
    return existing[0] if existing else community
