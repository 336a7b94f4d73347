"""Keeping the indexes in step with the documents, inside the same transaction.

`observe` is called by `Documents` for every stored edit (a local write or an
accepted merge). It re-reads only the entries the edit touched, found from
Automerge's patches between the heads the index reflects and the new heads,
so writing one post costs O(that post), not O(the author's feed). When the
index does not reflect the old heads (a store from before the index, an edit
that bypassed the observer), or the patches cannot be read, the document is
re-read whole. `refresh` brings a community's indexes up to date on first use;
`rebuild` throws them away and reads every document again.

Nothing a member signed can make this raise: a malformed entry is skipped and
counted in `ix_bad`, and a document the binding cannot read leaves no rows.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from automerge.core import ROOT, Document, ObjType

from p2p.docref import CHAT, COMMUNITY, DM, FEED, PROFILE, DocRef
from p2p.documents import Documents, get_obj, pack_heads, to_py
from p2p.index import entries, patches, prefetch

MAX_CHAIN = 10_000  # reply-chain steps followed when looking for a cycle

# per kind: top-level objects whose entries are indexed one by one
TOPS = {FEED: ("posts", "reactions"), CHAT: ("messages",), DM: ("boxes",)}


def observe(db: Any, ref: DocRef, doc: Document, old_heads: list[bytes]) -> None:
    """The observer registered with `Documents`; never raises for bad data."""
    try:
        _guarded(db, "ix_update", lambda: _update(db, ref, doc, old_heads))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001 - the binding panics as BaseException
        try:
            _guarded(db, "ix_full", lambda: _update(db, ref, doc, []))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # noqa: BLE001
            _unreadable(db, ref, doc)


def _guarded(db: Any, name: str, work: Any) -> None:
    db.execute(f"SAVEPOINT {name}")
    try:
        work()
    except BaseException:
        db.execute(f"ROLLBACK TO {name}")
        db.execute(f"RELEASE {name}")
        raise
    db.execute(f"RELEASE {name}")


def _unreadable(db: Any, ref: DocRef, doc: Document) -> None:
    """A document the binding cannot read: it contributes nothing, and is counted."""
    clear_doc(db, ref)
    db.execute("INSERT OR IGNORE INTO ix_bad (doc, top, key) VALUES (?, '*', '*')", (ref.id,))
    try:
        heads = pack_heads(doc.get_heads())
    except BaseException:  # noqa: BLE001
        heads = b""
    _set_heads(db, ref, heads)


def _set_heads(db: Any, ref: DocRef, heads: bytes) -> None:
    db.execute(
        "INSERT INTO ix_docs (doc, community, kind, owner, heads) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (doc) DO UPDATE SET heads = excluded.heads",
        (ref.id, ref.community, ref.kind, ref.owner, heads),
    )


def _update(db: Any, ref: DocRef, doc: Document, old_heads: list[bytes]) -> None:
    new_heads = doc.get_heads()
    row = db.execute("SELECT heads FROM ix_docs WHERE doc = ?", (ref.id,)).fetchone()
    whole = ref.kind in (PROFILE, COMMUNITY) or not old_heads or row is None
    whole = whole or row[0] != pack_heads(old_heads)
    touched: dict[str, set[str]] = {}
    if not whole:
        try:
            touched = patches.touched(doc.diff(old_heads, new_heads))
        except patches.Unreadable:
            whole = True
    if ref.kind == PROFILE:
        _profile(db, ref, doc)
    elif ref.kind == COMMUNITY:
        _moderation(db, ref, doc)
    elif ref.kind in TOPS:
        for top in TOPS[ref.kind]:
            keys = {patches.WHOLE} if whole else touched.get(top, set())
            if keys:
                _entries(db, ref, doc, top, keys)
    _set_heads(db, ref, pack_heads(new_heads))


def _entries(db: Any, ref: DocRef, doc: Document, top: str, keys: set[str]) -> None:
    obj = get_obj(doc, ROOT, top)
    if patches.WHOLE in keys:
        indexed = _indexed_keys(db, ref, top)
        keys = set(indexed)
        if obj is not None:
            keys.update(doc.keys(obj))
        bad_top = obj is None and doc.get(ROOT, top) is not None
        _mark(db, ref, top, "*", bad_top)
        if top == "posts" and not indexed and obj is not None:
            _bulk_posts(db, ref, doc, obj, sorted(keys))
            return
        if top == "messages" and not indexed and obj is not None:
            _bulk_messages(db, ref, doc, obj, sorted(keys))
            return
    for key in sorted(keys):
        got = doc.get(obj, key) if obj is not None else None
        value: Any = None
        present = got is not None
        if got is not None:
            value = to_py(doc, got[1]) if isinstance(got[0], ObjType) else got[0][1]
        ok = _apply(db, ref, top, key, value, present)
        _mark(db, ref, top, key, not ok)


def _bulk_posts(db: Any, ref: DocRef, doc: Document, obj: bytes, keys: list[str]) -> None:
    """A feed the index holds nothing of yet (first use, rebuild, a new author): its posts
    in a few set-wise statements instead of a handful per post; same rows as `_put_post`."""
    c, owner = ref.community, ref.owner
    rows, bad = [], []
    every = prefetch.take(ref.id, doc.get_heads())
    if every is None:
        every = _read(doc, ObjType.Map, obj)
    for key in keys:
        if key not in every:
            continue
        value: Any = every[key]
        row = entries.post(value)
        if row is None:
            bad.append((ref.id, "posts", key))
            continue
        text, ts, parent, edited, deleted = row
        pid = owner[:4].hex() + key
        att = entries.attachments(value)
        rows.append((c, owner, key, pid, ts, parent, text, edited, int(deleted), att))
    db.executemany("INSERT OR IGNORE INTO ix_bad (doc, top, key) VALUES (?, ?, ?)", bad)
    _insert_posts(db, rows)
    # which of these have their parent here, and which posts (anyone's) were waiting for them
    db.execute(
        "UPDATE ix_posts SET orphan = 0 WHERE community = ? AND author = ? AND parent IS NOT NULL"
        " AND EXISTS (SELECT 1 FROM ix_posts p INDEXED BY ix_posts_by_id"
        " WHERE p.community = ix_posts.community AND p.id = ix_posts.parent)",
        (c, owner),
    )
    # every id of this author starts with its key prefix: only replies to ids in that
    # range can have been waiting (one range of the parent index, not a probe per post)
    low, high = _prefix_range(owner)
    db.execute(
        "UPDATE ix_posts INDEXED BY ix_posts_by_parent SET orphan = 0"
        " WHERE community = ? AND parent >= ? AND parent < ? AND orphan = 1 AND EXISTS"
        " (SELECT 1 FROM ix_posts p INDEXED BY ix_posts_by_id"
        " WHERE p.community = ix_posts.community AND p.id = ix_posts.parent)",
        (c, low, high),
    )
    # two posts can share an id only if their authors share the key prefix
    sharing = db.execute(
        "SELECT 1 FROM ix_docs WHERE community = ? AND kind = ? AND owner != ?"
        " AND substr(owner, 1, 4) = ? LIMIT 1",
        (c, FEED, owner, owner[:4]),
    ).fetchone()
    twin = (
        sharing
        and db.execute(
            "SELECT 1 FROM ix_posts WHERE community = ? AND author = ? AND EXISTS"
            " (SELECT 1 FROM ix_posts p INDEXED BY ix_posts_by_id"
            " WHERE p.community = ix_posts.community AND p.id = ix_posts.id AND p.n != ix_posts.n)"
            " LIMIT 1",
            (c, owner),
        ).fetchone()
    )
    if twin:
        _flag(db, c, "collision")
    linked = db.execute(
        "SELECT id, parent FROM ix_posts WHERE community = ? AND author = ? AND orphan = 0",
        (c, owner),
    ).fetchall()
    for pid, parent in linked:
        if _cycles(db, c, pid, parent):
            _flag(db, c, "cycle")
            break


def _prefix_range(owner: bytes) -> tuple[str, str]:
    """[low, high): every text starting with the author's id prefix (`owner[:4].hex()`)."""
    low = owner[:4].hex()
    return low, low[:-1] + chr(ord(low[-1]) + 1)


def _read(doc: Document, kind: ObjType, obj: bytes) -> Any:
    """`to_py(doc, obj)` with two binding calls per map (keys, values) instead of
    one per entry: reading a new feed whole is most of what indexing it costs."""
    if kind != ObjType.Map:
        return to_py(doc, obj)
    keys, values = doc.keys(obj), doc.values(obj)
    if len(keys) != len(values):
        return to_py(doc, obj)
    return {
        k: _read(doc, v, oid) if isinstance(v, ObjType) else v[1]
        for k, (v, oid) in zip(keys, values, strict=True)
    }


POST_COLUMNS = "community, author, local, id, ts, parent, text, edited, deleted, attachments"
CHAT_COLUMNS = "community, author, local, id, room, text, ts, attachments"


def _insert_staged(db: Any, table: str, columns: str, rows: list[tuple], extra: str = "") -> None:
    """New rows of an indexed table with a full-text trigger, in ONE statement: the
    trigger then runs inside a single statement, where FTS5 flushes its pending terms
    once; a statement per row (executemany) flushes per row, 3x the cost of the insert.
    `extra`: ", column" set to 1 in every row (ix_posts' orphan)."""
    stage = f"temp.{table}_new"
    db.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table}_new ({columns})")
    db.execute(f"DELETE FROM {stage}")
    marks = ", ".join("?" * len(columns.split(",")))
    db.executemany(f"INSERT INTO {stage} ({columns}) VALUES ({marks})", rows)
    ones = ", 1" if extra else ""
    db.execute(
        f"INSERT INTO {table} ({columns}{extra}) SELECT {columns}{ones} FROM {stage} ORDER BY rowid"
    )
    db.execute(f"DELETE FROM {stage}")


def _insert_posts(db: Any, rows: list[tuple]) -> None:
    """New ix_posts rows (orphan = 1) in one statement (see `_insert_staged`)."""
    _insert_staged(db, "ix_posts", POST_COLUMNS, rows, ", orphan")


def _bulk_messages(db: Any, ref: DocRef, doc: Document, obj: bytes, keys: list[str]) -> None:
    """A chat the index holds nothing of yet: its messages read whole and inserted in one
    statement; the same rows and marks as `_apply` + `_mark` per message."""
    c, owner = ref.community, ref.owner
    every = prefetch.take(ref.id, doc.get_heads())
    if every is None:
        every = _read(doc, ObjType.Map, obj)
    rows, bad, good = [], [], []
    for key in keys:
        if key not in every:
            continue
        value: Any = every[key]
        msg = entries.message(value)
        if msg is None:
            bad.append((ref.id, "messages", key))
            continue
        good.append((ref.id, "messages", key))
        rows.append((c, owner, key, owner[:4].hex() + key, *msg, entries.attachments(value)))
    db.executemany("DELETE FROM ix_bad WHERE doc = ? AND top = ? AND key = ?", good)
    db.executemany("INSERT OR IGNORE INTO ix_bad (doc, top, key) VALUES (?, ?, ?)", bad)
    _insert_staged(db, "ix_chat", CHAT_COLUMNS, rows)


def _mark(db: Any, ref: DocRef, top: str, key: str, bad: bool) -> None:
    if bad:
        db.execute(
            "INSERT OR IGNORE INTO ix_bad (doc, top, key) VALUES (?, ?, ?)", (ref.id, top, key)
        )
    else:
        db.execute("DELETE FROM ix_bad WHERE doc = ? AND top = ? AND key = ?", (ref.id, top, key))


def _indexed_keys(db: Any, ref: DocRef, top: str) -> list[str]:
    c, o = ref.community, ref.owner
    if top == "posts":
        sql = "SELECT local FROM ix_posts WHERE community = ? AND author = ?"
    elif top == "reactions":
        sql = "SELECT DISTINCT target FROM ix_reactions WHERE community = ? AND reactor = ?"
    elif top == "messages":
        sql = "SELECT local FROM ix_chat WHERE community = ? AND author = ?"
    else:
        sql = "SELECT local FROM ix_dm WHERE community = ? AND author = ?"
    return [r[0] for r in db.execute(sql, (c, o))]


def _apply(db: Any, ref: DocRef, top: str, key: str, value: Any, present: bool) -> bool:
    """Index one entry (or drop it when absent or malformed); False if malformed."""
    c, owner = ref.community, ref.owner
    if top == "posts":
        row = entries.post(value) if present else None
        if row is None:
            _drop_post(db, c, owner, key)
        else:
            _put_post(db, c, owner, key, *row, entries.attachments(value))
    elif top == "reactions":
        emojis = entries.reaction(value) if present else None
        db.execute(
            "DELETE FROM ix_reactions WHERE community = ? AND reactor = ? AND target = ?",
            (c, owner, key),
        )
        db.executemany(
            "INSERT OR IGNORE INTO ix_reactions (community, reactor, target, emoji)"
            " VALUES (?, ?, ?, ?)",
            [(c, owner, key, e) for e in emojis or []],
        )
        return emojis is not None or not present
    elif top == "messages":
        msg = entries.message(value) if present else None
        db.execute(
            "DELETE FROM ix_chat WHERE community = ? AND author = ? AND local = ?", (c, owner, key)
        )
        if msg is not None:
            db.execute(
                "INSERT INTO ix_chat (community, author, local, id, room, text, ts, attachments)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (c, owner, key, owner[:4].hex() + key, *msg, entries.attachments(value)),
            )
        return msg is not None or not present
    else:
        got = entries.box(value) if present else None
        db.execute(
            "DELETE FROM ix_dm WHERE community = ? AND author = ? AND local = ?", (c, owner, key)
        )
        if got is not None:
            db.execute(
                "INSERT INTO ix_dm (community, author, local, ts, box) VALUES (?, ?, ?, ?, ?)",
                (c, owner, key, got[1], got[0]),
            )
        return got is not None or not present
    return row is not None or not present


def _put_post(
    db: Any,
    c: bytes,
    owner: bytes,
    local: str,
    text: str,
    ts: int,
    parent: str | None,
    edited: int | None,
    deleted: bool,
    attached: bytes | None,
) -> None:
    pid = owner[:4].hex() + local
    orphan = parent is None or not _exists(db, c, parent)
    old = db.execute(
        "SELECT text, ts, parent, edited, deleted, attachments FROM ix_posts"
        " WHERE community = ? AND author = ? AND local = ?",
        (c, owner, local),
    ).fetchone()
    if old == (text, ts, parent, edited, int(deleted), attached):
        return
    db.execute(
        "INSERT INTO ix_posts (community, author, local, id, ts, parent, text, edited, deleted,"
        " orphan, attachments) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (community, author, local) DO UPDATE SET ts = excluded.ts,"
        " parent = excluded.parent, text = excluded.text, edited = excluded.edited,"
        " deleted = excluded.deleted, orphan = excluded.orphan,"
        " attachments = excluded.attachments",
        (c, owner, local, pid, ts, parent, text, edited, int(deleted), int(orphan), attached),
    )
    if old is None:
        db.execute(
            "UPDATE ix_posts INDEXED BY ix_posts_by_parent SET orphan = 0"
            " WHERE community = ? AND parent = ? AND orphan = 1",
            (c, pid),
        )
        twins = db.execute(
            "SELECT count(*) FROM ix_posts WHERE community = ? AND id = ?", (c, pid)
        ).fetchone()[0]
        if twins > 1:
            _flag(db, c, "collision")
    if not orphan and (old is None or old[2] != parent) and _cycles(db, c, pid, parent):
        _flag(db, c, "cycle")


def _drop_post(db: Any, c: bytes, owner: bytes, local: str) -> None:
    pid = owner[:4].hex() + local
    gone = db.execute(
        "DELETE FROM ix_posts WHERE community = ? AND author = ? AND local = ?", (c, owner, local)
    ).rowcount
    if gone and not _exists(db, c, pid):
        db.execute(
            "UPDATE ix_posts INDEXED BY ix_posts_by_parent SET orphan = 1"
            " WHERE community = ? AND parent = ? AND orphan = 0",
            (c, pid),
        )


def _exists(db: Any, c: bytes, pid: str) -> bool:
    return (
        db.execute("SELECT 1 FROM ix_posts WHERE community = ? AND id = ?", (c, pid)).fetchone()
        is not None
    )


def _cycles(db: Any, c: bytes, start: str, parent: str | None) -> bool:
    """Whether following parents from `start` comes back to it (or goes on too long)."""
    cur, steps = parent, 0
    while cur is not None:
        if cur == start or steps > MAX_CHAIN:
            return True
        row = db.execute(
            "SELECT parent FROM ix_posts WHERE community = ? AND id = ?", (c, cur)
        ).fetchone()
        cur = row[0] if row else None
        steps += 1
    return False


def _flag(db: Any, c: bytes, flag: str) -> None:
    db.execute("INSERT OR IGNORE INTO ix_flags (community, flag) VALUES (?, ?)", (c, flag))


def flags(db: Any, community: bytes) -> set[str]:
    """Unusual shapes seen in a community ("cycle", "collision"): views take the careful path."""
    return {r[0] for r in db.execute("SELECT flag FROM ix_flags WHERE community = ?", (community,))}


def _profile(db: Any, ref: DocRef, doc: Document) -> None:
    data = to_py(doc)
    name = data.get("name") if isinstance(data, dict) else None
    bad = name is not None and not isinstance(name, str)
    _mark(db, ref, "name", "", bad)
    db.execute(
        "INSERT INTO ix_profiles (community, member, name) VALUES (?, ?, ?)"
        " ON CONFLICT (community, member) DO UPDATE SET name = excluded.name",
        (ref.community, ref.owner, name if isinstance(name, str) else ""),
    )


def _moderation(db: Any, ref: DocRef, doc: Document) -> None:
    """Roles, bans and hidden ids of the shared document, read whole (moderators write it)."""
    c = ref.community
    data = to_py(doc)
    db.execute("DELETE FROM ix_moderation WHERE community = ?", (c,))
    db.execute("DELETE FROM ix_bad WHERE doc = ?", (ref.id,))
    rows = []
    for what, table in (("role", "roles"), ("ban", "bans"), ("hidden", "hidden")):
        got = data.get(table, {}) if isinstance(data, dict) else {}
        if not isinstance(got, dict):
            _mark(db, ref, table, "*", True)
            continue
        for key, value in got.items():
            norm = key if what == "hidden" else entries.member_key(key)
            if norm is None:
                _mark(db, ref, table, str(key), True)
                continue
            rows.append((c, what, norm, str(value) if what == "role" else None))
    db.executemany(
        "INSERT OR REPLACE INTO ix_moderation (community, what, key, value) VALUES (?, ?, ?, ?)",
        rows,
    )


def clear_doc(db: Any, ref: DocRef) -> None:
    """Every index row one document contributed."""
    c, o = ref.community, ref.owner
    if ref.kind == FEED:
        for (local,) in db.execute(
            "SELECT local FROM ix_posts WHERE community = ? AND author = ?", (c, o)
        ).fetchall():
            _drop_post(db, c, o, local)
        db.execute("DELETE FROM ix_reactions WHERE community = ? AND reactor = ?", (c, o))
    elif ref.kind == CHAT:
        db.execute("DELETE FROM ix_chat WHERE community = ? AND author = ?", (c, o))
    elif ref.kind == DM:
        db.execute("DELETE FROM ix_dm WHERE community = ? AND author = ?", (c, o))
    elif ref.kind == PROFILE:
        db.execute("DELETE FROM ix_profiles WHERE community = ? AND member = ?", (c, o))
    elif ref.kind == COMMUNITY:
        db.execute("DELETE FROM ix_moderation WHERE community = ?", (c,))
    db.execute("DELETE FROM ix_bad WHERE doc = ?", (ref.id,))
    db.execute("DELETE FROM ix_docs WHERE doc = ?", (ref.id,))


TABLES = ("ix_posts", "ix_reactions", "ix_chat", "ix_dm", "ix_profiles", "ix_moderation")


def forget_community(db: Any, community: bytes) -> None:
    """Drop every index row of a community (when leaving it, or to rebuild)."""
    for table in (*TABLES, "ix_flags", "ix_docs"):
        db.execute(f"DELETE FROM {table} WHERE community = ?", (community,))
    db.execute("DELETE FROM ix_bad WHERE doc NOT IN (SELECT doc FROM ix_docs)")
    # FTS5 (SQLite < 3.42) keeps deleted words in its segments until they are rewritten:
    # rebuild both full-text indexes so that nothing of the community stays behind
    db.execute("INSERT INTO ix_posts_fts (ix_posts_fts) VALUES ('rebuild')")
    db.execute("INSERT INTO ix_chat_fts (ix_chat_fts) VALUES ('rebuild')")


def stale(db: Any, community: bytes) -> list[tuple[bytes, str, bytes, bool]]:
    """Documents of a community the index does not reflect as stored now."""
    rows = db.execute(
        "SELECT d.id, d.kind, d.owner FROM docs d LEFT JOIN ix_docs x ON x.doc = d.id"
        " WHERE d.community = ? AND (x.heads IS NULL OR x.heads != d.heads)",
        (community,),
    ).fetchall()
    gone = db.execute(
        "SELECT x.doc, x.kind, x.owner FROM ix_docs x LEFT JOIN docs d ON d.id = x.doc"
        " WHERE x.community = ? AND d.id IS NULL",
        (community,),
    ).fetchall()
    return [(*r, True) for r in rows] + [(*r, False) for r in gone]


Progress = Callable[[int, int, int], None]  # (bytes read, bytes in all, documents read)


def refresh(docs: Documents, community: bytes, progress: Progress | None = None) -> int:
    """Bring one community's indexes up to date (first use, or after a bypass); how many
    documents were read."""
    db = docs.store.db
    memo = _fresh.setdefault(docs, {})
    if memo.get(community) == _stamp(db):
        return 0  # nothing was written to this store since the last look
    if not stale(db, community):
        memo[community] = _stamp(db)
        return 0
    n = 0
    with docs.store.transaction() as db:
        todo = stale(db, community)
        sizes = dict(
            db.execute(
                "SELECT id, length(snapshot) FROM docs WHERE community = ?", (community,)
            ).fetchall()
        )
        total, done = sum(sizes.get(r[0], 0) for r in todo), 0
        for doc_id, kind, owner, stored in todo:
            if progress is not None:
                progress(done, total, n)
            done += sizes.get(doc_id, 0)
            ref = DocRef(community, kind, owner)
            if not stored:  # the document is gone (set aside as damaged): so are its rows
                clear_doc(db, ref)
                continue
            try:
                doc = docs.load(doc_id)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # noqa: BLE001 - a stored document that no longer loads
                doc = None
            if doc is None:  # set aside as damaged (its rows go), or unloadable (counted)
                clear_doc(db, ref)
                row = db.execute("SELECT heads FROM docs WHERE id = ?", (doc_id,)).fetchone()
                if row is not None:
                    db.execute(
                        "INSERT OR IGNORE INTO ix_bad (doc, top, key) VALUES (?, '*', '*')",
                        (doc_id,),
                    )
                    _set_heads(db, ref, row[0])
                continue
            observe(db, ref, doc, [])
            n += 1
    memo[community] = _stamp(db)
    return n


# per open store (its Documents): the store's write stamp when each community was last fresh
_fresh: weakref.WeakKeyDictionary[Documents, dict[bytes, tuple[int, int]]] = (
    weakref.WeakKeyDictionary()
)


def _stamp(db: Any) -> tuple[int, int]:
    """Changes whenever anything is written to the store, by this connection or another."""
    return db.execute("PRAGMA data_version").fetchone()[0], db.total_changes


def rebuild(docs: Documents, community: bytes, progress: Progress | None = None) -> int:
    """Throw away a community's indexes and read every document again."""
    with docs.store.transaction() as db:
        forget_community(db, community)
        return refresh(docs, community, progress)


def bad_entries(db: Any, community: bytes) -> int:
    """How many entries of a community were skipped as malformed."""
    return db.execute(
        "SELECT count(*) FROM ix_bad b JOIN ix_docs x ON x.doc = b.doc WHERE x.community = ?",
        (community,),
    ).fetchone()[0]
