"""Names of documents and communities, derived so that anyone can check them.

A community id commits to its owner's key; a document id commits to its
community, kind and owner. A record that claims "this is Alice's feed" can
therefore be checked by recomputing the id, with nothing to look up.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

COMMUNITY = "community"  # the shared document: settings, roles, bans, hidden posts
FEED = "feed"  # an author's posts, replies, reactions, edits
PROFILE = "profile"  # an author's display name, bio and encryption key
CHAT = "chat"  # an author's group-chat messages, by room
DM = "dm"  # an author's direct messages, each sealed to its recipient
KINDS = (COMMUNITY, FEED, PROFILE, CHAT, DM)
OWNED_KINDS = (FEED, PROFILE, CHAT, DM)


def community_id(owner: bytes, salt: bytes) -> bytes:
    return hashlib.sha256(b"p2p/community/v1\x00" + owner + salt).digest()[:16]


def doc_id(community: bytes, kind: str, owner: bytes) -> bytes:
    return hashlib.sha256(
        b"p2p/doc/v1\x00" + community + kind.encode("ascii") + b"\x00" + owner
    ).digest()[:16]


@dataclass(frozen=True)
class DocRef:
    community: bytes
    kind: str
    owner: bytes

    @property
    def id(self) -> bytes:
        return doc_id(self.community, self.kind, self.owner)
