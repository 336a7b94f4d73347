"""Full-text search over a community's posts and chat messages (SQLite FTS5).

What a reader would not see is not found: hidden posts and messages, anything
by a banned member, deleted posts. The words are matched as words (each one
quoted), never as FTS5 query syntax a user did not mean to write.
"""

from __future__ import annotations

from p2p.documents import Documents
from p2p.identity import fingerprint
from p2p.index.view import View

MAX_WORDS = 16


def query(words: str) -> str:
    """An FTS5 query matching every word (the user's text is never query syntax)."""
    tokens = words.split()[:MAX_WORDS]
    if not tokens:
        raise ValueError("give one or more words to search for")
    return " ".join('"' + t.replace('"', '""') + '"' for t in tokens)


def search(docs: Documents, community: bytes, words: str, limit: int = 20) -> list[dict]:
    """The best matches among posts and chat, most relevant first."""
    match = query(words)
    view = View(docs, community)
    not_hidden = (
        " AND x.id NOT IN (SELECT key FROM ix_moderation WHERE community = ? AND what = 'hidden')"
    )
    found = []
    # ix_posts names community and authors by number (View.member), ix_chat by key
    for kind, table, extra, cid, banned, key in (
        (
            "post",
            "ix_posts",
            " AND x.deleted = 0",
            view.cnum,
            view.banned_nums,
            view.member.__getitem__,
        ),
        ("chat", "ix_chat", "", community, view.banned, lambda a: a),
    ):
        out = sorted(banned)
        not_banned = f" AND x.author NOT IN ({','.join('?' * len(out))})" if out else ""
        rows = view.db.execute(
            f"SELECT x.author, x.id, x.ts, x.text, {table}_fts.rank FROM {table}_fts"
            f" JOIN {table} x ON x.n = {table}_fts.rowid"
            f" WHERE {table}_fts MATCH ? AND x.community = ?{extra}{not_banned}{not_hidden}"
            f" ORDER BY {table}_fts.rank LIMIT ?",
            (match, cid, *out, community, limit),
        )
        for num, pid, ts, text, rank in rows:
            author = key(num)
            found.append(
                {
                    "kind": kind,
                    "id": pid,
                    "author": author.hex(),
                    "author_name": view.names.get(author, ""),
                    "fingerprint": fingerprint(author),
                    "ts": ts,
                    "text": text,
                    "rank": rank,
                }
            )
    found.sort(key=lambda r: (r["rank"], -r["ts"], r["id"]))
    return found[:limit]
