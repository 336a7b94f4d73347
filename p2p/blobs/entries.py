"""A post's attachment list: what the signed post says about each attachment.

In a post (or chat message) `attachments` is a list of maps:
`{"id": 32 bytes, "name": str, "size": int, "mime": str}` plus `"key"` (32
bytes, private communities) and `"thumb"` (a WebP of at most 16 KiB). The post
names the manifest by hash; the name, size and type are there too, so a reader
sees them before anything else arrives. Any member can sign any value, so
`parse` keeps only well-formed entries and never trusts a field's type.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from p2p.blobs import manifest as mf
from p2p.blobs.media import THUMB_MAX
from p2p.blobs.seal import KEY
from p2p.home import Home

MAX_PER_POST = 16


@dataclass(frozen=True)
class Entry:
    id: bytes
    name: str
    size: int
    mime: str
    key: bytes | None = None
    thumb: bytes | None = None

    def as_doc(self) -> dict:
        out: dict = {"id": self.id, "name": self.name, "size": self.size, "mime": self.mime}
        if self.key is not None:
            out["key"] = self.key
        if self.thumb is not None:
            out["thumb"] = self.thumb
        return out


def parse_one(value: object) -> Entry | None:
    if not isinstance(value, dict):
        return None
    aid, name, size, mime = value.get("id"), value.get("name"), value.get("size"), value.get("mime")
    key, thumb = value.get("key"), value.get("thumb")
    if not isinstance(aid, bytes) or len(aid) != mf.HASH:
        return None
    if type(size) is not int or not 0 <= size <= mf.MAX_SIZE:
        return None
    if not isinstance(name, str) or not isinstance(mime, str):
        return None
    if key is not None and (not isinstance(key, bytes) or len(key) != KEY):
        return None
    if thumb is not None and (not isinstance(thumb, bytes) or len(thumb) > THUMB_MAX):
        thumb = None
    return Entry(aid, mf.clean_name(name), size, mime[: mf.MAX_MIME], key, thumb)


def parse(value: object) -> list[Entry]:
    """The well-formed entries of a post's `attachments` value (anything signed)."""
    if not isinstance(value, list):
        return []
    out = [e for e in (parse_one(v) for v in value[:MAX_PER_POST]) if e is not None]
    return out


@dataclass(frozen=True)
class Ref:
    """One post (or chat message) naming an attachment."""

    community: bytes
    author: bytes
    post: str
    ts: int
    entry: Entry


def refs(home: Home, communities: Iterable[bytes] | None = None) -> Iterator[Ref]:
    """Every attachment named by a post or chat message of these communities
    (read from the feed and chat indexes, brought up to date first)."""
    from p2p.index.entries import unpack_attachments
    from p2p.index.update import refresh

    db = home.store.db
    if communities is None:
        communities = [c for (c,) in db.execute("SELECT DISTINCT community FROM docs")]
    for community in sorted(set(communities)):
        refresh(home.docs, community)
        rows = db.execute(
            "SELECT k.key, x.id, x.ts, x.attachments FROM ix_posts x"
            " JOIN ix_keys k ON k.k = x.author"  # ix_posts holds numbers for keys
            " WHERE x.community = (SELECT k FROM ix_keys WHERE key = ?)"
            " AND x.attachments IS NOT NULL AND x.deleted = 0"
            " UNION ALL SELECT author, id, ts, attachments FROM ix_chat"
            " WHERE community = ? AND attachments IS NOT NULL",
            (community, community),
        ).fetchall()
        for author, pid, ts, packed in rows:
            try:
                value = unpack_attachments(packed)
            except Exception:  # noqa: BLE001 - a member can sign any value
                continue
            for e in parse(value):
                yield Ref(community, bytes(author), pid, ts if type(ts) is int else 0, e)
