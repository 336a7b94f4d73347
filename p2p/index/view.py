"""A community as its indexes describe it: bans, hidden ids, names, and post rows as dicts."""

from __future__ import annotations

from typing import Any

from p2p.documents import Documents
from p2p.identity import fingerprint
from p2p.index.entries import unpack_attachments
from p2p.index.update import known_num, refresh

# ix_posts columns as `View.post` reads them (`author` is a number: see `View.member`)
COLUMNS = "author, NULL, id, ts, parent, text, edited, deleted, attachments"


class View:
    """What a community's indexes say about who is banned, what is hidden, and names."""

    def __init__(self, docs: Documents, community: bytes) -> None:
        refresh(docs, community)
        self.db = docs.store.db
        self.cid = community
        self.cnum = known_num(self.db, community)  # ix_posts' number for it (None: no posts)
        self.member: dict[int, bytes] = dict(self.db.execute("SELECT k, key FROM ix_keys"))
        self.banned: set[bytes] = set()
        self.hidden: set[str] = set()
        for what, key in self.db.execute(
            "SELECT what, key FROM ix_moderation WHERE community = ? AND what IN ('ban', 'hidden')",
            (community,),
        ):
            if what == "ban":
                self.banned.add(bytes.fromhex(key))
            else:
                self.hidden.add(key)
        self.names: dict[bytes, str] = dict(
            self.db.execute(
                "SELECT member, name FROM ix_profiles WHERE community = ?", (community,)
            )
        )
        self._fingerprints: dict[bytes, str] = {}
        # banned members as ix_posts numbers (a member never indexed has no posts)
        self.banned_nums = {k for k, key in self.member.items() if key in self.banned}

    def post(self, row: tuple) -> dict:
        num, _local, pid, ts, parent, text, edited, deleted, attached = row
        author = self.member[num]
        fp = self._fingerprints.get(author)
        if fp is None:
            fp = self._fingerprints[author] = fingerprint(author)
        removed = "banned" if author in self.banned else "hidden" if pid in self.hidden else None
        return {
            "id": pid,
            "author": author.hex(),
            "author_name": self.names.get(author, ""),
            "fingerprint": fp,
            "text": text,
            "ts": ts,
            "parent": parent,
            "edited": edited,
            "deleted": bool(deleted),
            "removed": removed,
            "reactions": {},
            "attachments": [] if deleted else unpack_attachments(attached),  # raw: described later
        }

    def react(self, posts: dict[str, dict], rows: Any) -> None:
        """Attach reactions (reactor order), leaving out banned reactors'."""
        for reactor, target, emoji in rows:
            if reactor in self.banned or target not in posts:
                continue
            posts[target]["reactions"].setdefault(emoji, []).append(reactor.hex())

    def reactions(self, targets: list[str]) -> Any:
        marks = ",".join("?" * len(targets))
        return self.db.execute(
            "SELECT reactor, target, emoji FROM ix_reactions WHERE community = ?"
            f" AND target IN ({marks}) ORDER BY reactor, target, emoji",
            (self.cid, *targets),
        )


def prefix_rows(view: View, table: str, prefix: str, distinct: int) -> list[tuple]:
    """Rows whose id starts with `prefix`, stopping once `distinct` different ids are seen
    (an indexed range scan: ids compare as UTF-8 bytes, as Python compares code points).
    A post row's author is its number (`View.member`)."""
    posts = table == "ix_posts"
    columns = COLUMNS if posts else "author, local, id, room, text, ts, attachments"
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1) if ord(prefix[-1]) < 0x10FFFF else None
    sql = f"SELECT {columns} FROM {table} WHERE community = ? AND id >= ?"
    args: list[object] = [view.cnum if posts else view.cid, prefix]
    if upper is not None:
        sql += " AND id < ?"
        args.append(upper)
    out: list[tuple] = []
    ids: set[str] = set()
    for row in view.db.execute(sql + " ORDER BY id", args):
        if not row[2].startswith(prefix):
            break
        if row[2] not in ids and len(ids) == distinct:
            break
        ids.add(row[2])
        out.append(row)
    return out


def name(docs: Documents, community: bytes, member: bytes) -> str:
    """One member's display name ("" when they chose none, or chose something malformed)."""
    refresh(docs, community)
    row = docs.store.db.execute(
        "SELECT name FROM ix_profiles WHERE community = ? AND member = ?", (community, member)
    ).fetchone()
    return row[0] if row else ""
