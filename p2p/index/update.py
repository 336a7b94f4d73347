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
from dataclasses import dataclass
from typing import Any

from automerge.core import ROOT, Document, ObjType

from p2p.docref import CHAT, COMMUNITY, DM, FEED, PROFILE, DocRef
from p2p.documents import Documents, get_obj, pack_heads, to_py
from p2p.index import entries, patches, prefetch

MAX_CHAIN = 10_000  # reply-chain steps followed when looking for a cycle
MAX_ENDS = 200_000  # chain ends remembered while checking many rows for cycles

# A bulk insert into an ix_posts holding fewer rows than this (a first import, a rebuild)
# drops the secondary indexes and the full-text trigger and builds them once at the end of
# the transaction: one sort instead of a random B-tree insert per row and index.
DEFER_EXISTING = 50_000
DEFER_MIN = 1_000  # ... when one feed brings at least this many posts
DEFERRED_INDEXES = ("ix_posts_by_parent", "ix_posts_roots")
DEFERRED_TRIGGER = "ix_posts_ai"
# SQLite sorts an index build in memory up to the page cache's size, then in temporary
# files: a bounded cache keeps a big import's peak memory where it was
SETTLE_CACHE = -16_384  # KiB
SETTLE_FTS_HASH = 16 * 1024 * 1024  # bytes of pending full-text terms while settling
FTS_HASH = 1024 * 1024  # FTS5's default, kept for everyday writes

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
    # each top-level map read whole by a big import's helper process, at these heads
    # (`prefetch`): then nothing here needs the document itself, which may not even be
    # loaded in this process (`binding.Vouched`)
    pre, entries_read = None, None
    if whole and ref.kind in TOPS and (got := prefetch.take(ref.id, new_heads)) is not None:
        pre, entries_read = got
    _remember(
        ref.id, Step(sorted(old_heads), sorted(new_heads), None if whole else touched, entries_read)
    )
    if ref.kind == PROFILE:
        _profile(db, ref, doc)
    elif ref.kind == COMMUNITY:
        _moderation(db, ref, doc)
    elif ref.kind in TOPS:
        for top in TOPS[ref.kind]:
            keys = {patches.WHOLE} if whole else touched.get(top, set())
            if keys:
                _entries(db, ref, doc, top, keys, None if pre is None else pre.get(top))
    _set_heads(db, ref, pack_heads(new_heads))


@dataclass(frozen=True)
class Step:
    """What the index learnt of one stored step of a document, for `news` to count its
    new entries without listing every key at both heads (a 20k-post feed: 2 x 20k)."""

    before: list[bytes]  # heads, sorted
    after: list[bytes]
    touched: dict[str, set[str]] | None  # keys changed per top-level map; None: read whole
    entries: int | None = None  # read whole by the import's helper: keys in its entry map


# the last step of each document, taken once (`last_step`); kept small
_steps: dict[bytes, Step] = {}
STEPS_KEPT = 1024


def _remember(doc_id: bytes, step: Step) -> None:
    if step.touched is None and step.entries is None:
        _steps.pop(doc_id, None)  # nothing to count from
        return
    if len(_steps) >= STEPS_KEPT:
        _steps.clear()
    _steps[doc_id] = step


def last_step(doc_id: bytes, before: list[bytes], after: list[bytes]) -> Step | None:
    """What the index's last update of this document learnt, if that update was exactly
    the step from `before` to `after` (else None: another step, or none remembered)."""
    got = _steps.pop(doc_id, None)
    if got is None or got.before != sorted(before) or got.after != sorted(after):
        return None
    return got


def _entries(
    db: Any, ref: DocRef, doc: Document, top: str, keys: set[str], pre: Any = None
) -> None:
    """Re-index `keys` of the map `top` (WHOLE: all of it). `pre`: `whole(doc, top)` as
    the import's helper read it, used when the index holds nothing of this map yet."""
    indexed = _indexed_keys(db, ref, top) if patches.WHOLE in keys else []
    if patches.WHOLE in keys and not indexed:
        _index_whole(db, ref, top, pre if pre is not None else whole(doc, top))
        return
    obj = get_obj(doc, ROOT, top)
    if patches.WHOLE in keys:
        keys = set(indexed)
        if obj is not None:
            keys.update(doc.keys(obj))
        _mark(db, ref, top, "*", obj is None and doc.get(ROOT, top) is not None)
    if top == "posts":
        settle(db)
    for key in sorted(keys):
        got = doc.get(obj, key) if obj is not None else None
        value: Any = None
        present = got is not None
        if got is not None:
            value = to_py(doc, got[1]) if isinstance(got[0], ObjType) else got[0][1]
        ok = _apply(db, ref, top, key, value, present)
        _mark(db, ref, top, key, not ok)


def whole(doc: Document, top: str) -> tuple[bool, Any]:
    """The map `top` of a document read whole, for an index holding nothing of it yet:
    (whether `top` is there but not an object, what `_index_whole` stores). Plain data,
    so the import's helper process reads it (p2p/index/prefetch.py) exactly as this
    process would."""
    obj = get_obj(doc, ROOT, top)
    if obj is None:
        return doc.get(ROOT, top) is not None, None
    if top == "posts":
        return False, post_rows(doc, obj)
    if top == "messages":
        read = _read(doc, ObjType.Map, obj)
        return False, {key: read[key] for key in sorted(doc.keys(obj)) if key in read}
    every = []
    for key in sorted(doc.keys(obj)):
        got = doc.get(obj, key)
        value: Any = None
        if got is not None:
            value = to_py(doc, got[1]) if isinstance(got[0], ObjType) else got[0][1]
        every.append((key, value, got is not None))
    return False, every


def _index_whole(db: Any, ref: DocRef, top: str, read: tuple[bool, Any]) -> None:
    """Index a map read by `whole`: posts and messages in bulk, others entry by entry."""
    bad_top, every = read
    _mark(db, ref, top, "*", bad_top)
    if every is None:
        if top == "posts":
            settle(db)
        return
    if top == "posts":
        _bulk_posts(db, ref, every)
        return
    if top == "messages":
        _bulk_messages(db, ref, every)
        return
    for key, value, present in every:
        ok = _apply(db, ref, top, key, value, present)
        _mark(db, ref, top, key, not ok)


def post_rows(doc: Document, obj: bytes) -> tuple[list[tuple], list[str]]:
    """Every post of a feed's `posts` map, in key order, as (key, ts, parent, text, edited,
    deleted, attachments) -- the rows `_put_post` would write -- and the keys of the
    entries `entries.post` refuses. Reads a plain post with two binding calls and no
    dict: a first import reads a million of them."""
    rows: list[tuple] = []
    bad: list[str] = []
    names, values = doc.keys(obj), doc.values(obj)
    got: dict[str, tuple[Any, bytes | None]]
    if len(names) != len(values):
        every = to_py(doc, obj)
        got = {k: (every[k], None) for k in every}
    else:
        got = dict(zip(names, values, strict=True))
    for key in sorted(got):
        kind, oid = got[key]
        row = _plain_post(doc, oid) if oid is not None and kind == ObjType.Map else None
        if row is not None:
            rows.append((key, row[1], row[2], row[0], None, 0, None))
            continue
        _add_row(rows, bad, key, kind if oid is None else _value_of(doc, kind, oid))
    return rows, bad


def _add_row(rows: list[tuple], bad: list[str], key: str, value: Any) -> None:
    post = entries.post(value)
    if post is None:
        bad.append(key)
        return
    text, ts, parent, edited, deleted = post
    rows.append((key, ts, parent, text, edited, int(deleted), entries.attachments(value)))


def _bulk_posts(db: Any, ref: DocRef, read: tuple[list[tuple], list[str]]) -> None:
    """A feed the index holds nothing of yet (first use, rebuild, a new author): its posts
    (`post_rows`) in a few set-wise statements instead of a handful per post; same rows
    as `_put_post`."""
    c, owner = ref.community, ref.owner
    cn, an = key_num(db, c), key_num(db, owner)
    prefix = owner[:4].hex()
    got, bad_keys = read
    rows = [(cn, an, prefix + r[0], *r[1:]) for r in got]
    bad = [(ref.id, "posts", key) for key in bad_keys]
    db.executemany("INSERT OR IGNORE INTO ix_bad (doc, top, key) VALUES (?, ?, ?)", bad)
    if _deferring(db, len(rows)):  # no trigger now: straight in; linked etc. in `settle`
        db.executemany(
            f"INSERT INTO ix_posts ({POST_COLUMNS}, orphan) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
            rows,
        )
        return
    _insert_posts(db, rows)
    # every id of this author starts with its key prefix: its rows are one range of ids
    low, high = _prefix_range(owner)
    mine = "community = ? AND id >= ? AND id < ? AND author = ?"
    # which of these have their parent here, and which posts (anyone's) were waiting for them
    db.execute(
        f"UPDATE ix_posts INDEXED BY ix_posts_key SET orphan = 0 WHERE {mine}"
        " AND parent IS NOT NULL AND EXISTS (SELECT 1 FROM ix_posts p INDEXED BY ix_posts_key"
        " WHERE p.community = ix_posts.community AND p.id = ix_posts.parent)",
        (cn, low, high, an),
    )
    # only replies to ids in that range can have been waiting (one range of the parent
    # index, not a probe per post)
    db.execute(
        "UPDATE ix_posts INDEXED BY ix_posts_by_parent SET orphan = 0"
        " WHERE community = ? AND parent >= ? AND parent < ? AND orphan = 1 AND EXISTS"
        " (SELECT 1 FROM ix_posts p INDEXED BY ix_posts_key"
        " WHERE p.community = ix_posts.community AND p.id = ix_posts.parent)",
        (cn, low, high),
    )
    # two posts can share an id only if their authors share the key prefix
    sharing = db.execute(
        "SELECT 1 FROM ix_docs WHERE community = ? AND kind = ? AND owner != ?"
        " AND substr(owner, 1, 4) = ? LIMIT 1",
        (c, FEED, owner, owner[:4]),
    ).fetchone()
    if sharing and _twin(db, cn, an, owner):
        _flag(db, c, "collision")
    linked = db.execute(
        f"SELECT id, parent FROM ix_posts INDEXED BY ix_posts_key WHERE {mine} AND orphan = 0",
        (cn, low, high, an),
    ).fetchall()
    _check_cycles(db, c, cn, linked)


def _twin(db: Any, cn: int, an: int, owner: bytes) -> bool:
    """Whether a post of this author shares its id with another post."""
    low, high = _prefix_range(owner)
    return (
        db.execute(
            "SELECT 1 FROM ix_posts INDEXED BY ix_posts_key"
            " WHERE community = ? AND id >= ? AND id < ? AND author = ? AND EXISTS"
            " (SELECT 1 FROM ix_posts p INDEXED BY ix_posts_key"
            " WHERE p.community = ix_posts.community AND p.id = ix_posts.id AND p.n != ix_posts.n)"
            " LIMIT 1",
            (cn, low, high, an),
        ).fetchone()
        is not None
    )


def _check_cycles(db: Any, c: bytes, cn: int, linked: list[tuple[str, str]]) -> None:
    """Flag the community if any of these (id, parent) rows starts a cycle (or too long a
    chain); chains already followed to their end are not followed again."""
    ends: dict[str, int] = {}
    for pid, parent in linked:
        if _cycles(db, cn, pid, parent, ends):
            _flag(db, c, "cycle")
            return


def key_num(db: Any, key: bytes) -> int:
    """The small number standing for a community id or a member key in ix_posts (a row
    holds two numbers, not two 32-byte keys, and so does every index entry)."""
    row = db.execute("SELECT k FROM ix_keys WHERE key = ?", (key,)).fetchone()
    if row is not None:
        return row[0]
    return db.execute("INSERT INTO ix_keys (key) VALUES (?)", (key,)).lastrowid


def known_num(db: Any, key: bytes) -> int | None:
    """`key_num` for readers: None when the key was never indexed (it has no posts)."""
    row = db.execute("SELECT k FROM ix_keys WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def _deferring(db: Any, new_rows: int) -> bool:
    """Whether bulk-inserted posts skip the secondary indexes until `settle`: already so in
    this transaction, or worth starting (a big insert into a small table, inside a
    `Store.transaction` whose commit will settle)."""
    if db.execute("SELECT 1 FROM ix_deferred").fetchone():
        return True
    if new_rows < DEFER_MIN or not getattr(db, "depth", 0):
        return False
    held = db.execute(
        "SELECT count(*) FROM (SELECT 1 FROM ix_posts LIMIT ?)", (DEFER_EXISTING,)
    ).fetchone()[0]
    if held >= DEFER_EXISTING:
        return False
    base = db.execute("SELECT coalesce(max(n), 0) FROM ix_posts").fetchone()[0]
    db.execute("INSERT INTO ix_deferred (base) VALUES (?)", (base,))
    for name in DEFERRED_INDEXES:
        db.execute(f"DROP INDEX IF EXISTS {name}")
    db.execute(f"DROP TRIGGER IF EXISTS {DEFERRED_TRIGGER}")
    db.before_commit.append(settle)
    return True


def _deferred_schema() -> list[str]:
    """The store's own statements creating what `_deferring` drops."""
    from p2p.store import SCHEMA, statements

    names = (*DEFERRED_INDEXES, DEFERRED_TRIGGER)
    return [st for st in statements(SCHEMA) if any(f" {n} " in st for n in names)]


def settle(db: Any) -> None:
    """Finish a deferred bulk insert: build the indexes and the full-text trigger again,
    put the new rows into the full-text index, then link and check them as `_bulk_posts`
    does, set-wise. A no-op when nothing is deferred; also run before anything else reads
    or changes ix_posts, and by `refresh` should a store ever be left unsettled."""
    row = db.execute("SELECT min(base) FROM ix_deferred").fetchone()
    if row[0] is None:
        return
    base = row[0]
    cache = db.execute("PRAGMA cache_size").fetchone()[0]
    db.execute(f"PRAGMA cache_size = {SETTLE_CACHE}")  # what each index build may sort in
    try:
        for statement in _deferred_schema():
            db.execute(statement)
    finally:
        db.execute(f"PRAGMA cache_size = {int(cache)}")
    # FTS5 gathers terms in memory up to 'hashsize' bytes per flush (1 MiB by default):
    # 16 MiB for this one big insert makes fewer, larger segments (a third less time)
    fts_hash = "INSERT INTO ix_posts_fts (ix_posts_fts, rank) VALUES ('hashsize', ?)"
    db.execute(fts_hash, (SETTLE_FTS_HASH,))
    db.execute(
        "INSERT INTO ix_posts_fts (rowid, text) SELECT n, text FROM ix_posts WHERE n > ?", (base,)
    )
    db.execute(fts_hash, (FTS_HASH,))
    # new rows whose parent is here (anyone's), and older rows that were waiting for them
    exists = (
        "EXISTS (SELECT 1 FROM ix_posts p INDEXED BY ix_posts_key"
        " WHERE p.community = ix_posts.community AND p.id = ix_posts.parent{})"
    )
    db.execute(
        "UPDATE ix_posts SET orphan = 0 WHERE n > ? AND parent IS NOT NULL AND "
        + exists.format(""),
        (base,),
    )
    db.execute(
        "UPDATE ix_posts SET orphan = 0 WHERE n <= ? AND orphan = 1 AND parent IS NOT NULL AND "
        + exists.format(" AND p.n > ?"),
        (base, base),
    )
    # two posts can share an id only if their authors share the key prefix
    sharing = db.execute(
        "SELECT DISTINCT a.community, a.owner FROM ix_docs a JOIN ix_docs b"
        " ON b.community = a.community AND b.kind = a.kind AND b.owner != a.owner"
        " AND substr(b.owner, 1, 4) = substr(a.owner, 1, 4) WHERE a.kind = ?",
        (FEED,),
    ).fetchall()
    for c, owner in sharing:
        cn, an = known_num(db, c), known_num(db, owner)
        if cn is not None and an is not None and _twin(db, cn, an, owner):
            _flag(db, c, "collision")
    communities = db.execute(
        "SELECT k, key FROM ix_keys WHERE k IN (SELECT DISTINCT community FROM ix_posts"
        " WHERE n > ?)",
        (base,),
    ).fetchall()
    for cn, c in communities:
        linked = db.execute(
            "SELECT id, parent FROM ix_posts WHERE n > ? AND community = ? AND orphan = 0",
            (base, cn),
        ).fetchall()
        _check_cycles(db, c, cn, linked)
    db.execute("DELETE FROM ix_deferred")


def _prefix_range(owner: bytes) -> tuple[str, str]:
    """[low, high): every text starting with the author's id prefix (`owner[:4].hex()`)."""
    low = owner[:4].hex()
    return low, low[:-1] + chr(ord(low[-1]) + 1)


PLAIN = ["text", "ts"]
PLAIN_REPLY = ["parent", "text", "ts"]


def _plain_post(doc: Document, obj: bytes) -> tuple[str, int, str | None] | None:
    """(text, ts, parent) of a post map holding exactly `text`, `ts` and maybe `parent`, of
    the types `entries.post` accepts; None for any other post (read the general way).
    Two binding calls and no dict: a fresh import reads a million of these."""
    names = doc.keys(obj)
    if names != PLAIN and names != PLAIN_REPLY:
        return None
    values = doc.values(obj)
    if len(values) != len(names):
        return None
    parent = None
    if len(values) == 3:
        got = values[0][0]
        if not isinstance(got, tuple) or type(got[1]) is not str:
            return None
        parent = got[1]
    got_text, got_ts = values[-2][0], values[-1][0]
    if not isinstance(got_text, tuple) or not isinstance(got_ts, tuple):
        return None
    text, ts = got_text[1], got_ts[1]
    if type(text) is not str or type(ts) is not int or not 0 <= ts <= entries.MAX_TS:
        return None
    return text, ts, parent


def _value_of(doc: Document, kind: Any, oid: bytes) -> Any:
    """One entry of a map's `values()` as plain Python (see `_read`)."""
    return _read(doc, kind, oid) if isinstance(kind, ObjType) else kind[1]


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


POST_COLUMNS = "community, author, id, ts, parent, text, edited, deleted, attachments"
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


def _bulk_messages(db: Any, ref: DocRef, every: Any) -> None:
    """A chat the index holds nothing of yet: its messages (read whole) inserted in one
    statement; the same rows and marks as `_apply` + `_mark` per message."""
    c, owner = ref.community, ref.owner
    rows, bad, good = [], [], []
    for key, value in every.items():
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
        return _post_keys(db, c, o)
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
    cn, an = key_num(db, c), key_num(db, owner)
    # a post naming itself as parent is linked (to itself: a cycle), as in `_bulk_posts`
    orphan = parent is None or (parent != pid and not _exists(db, cn, parent))
    old = db.execute(
        "SELECT text, ts, parent, edited, deleted, attachments FROM ix_posts"
        " WHERE community = ? AND id = ? AND author = ?",
        (cn, pid, an),
    ).fetchone()
    if old == (text, ts, parent, edited, int(deleted), attached):
        return
    db.execute(
        "INSERT INTO ix_posts (community, author, id, ts, parent, text, edited, deleted,"
        " orphan, attachments) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (community, id, author) DO UPDATE SET ts = excluded.ts,"
        " parent = excluded.parent, text = excluded.text, edited = excluded.edited,"
        " deleted = excluded.deleted, orphan = excluded.orphan,"
        " attachments = excluded.attachments",
        (cn, an, pid, ts, parent, text, edited, int(deleted), int(orphan), attached),
    )
    if old is None:
        db.execute(
            "UPDATE ix_posts INDEXED BY ix_posts_by_parent SET orphan = 0"
            " WHERE community = ? AND parent = ? AND orphan = 1",
            (cn, pid),
        )
        twins = db.execute(
            "SELECT count(*) FROM ix_posts WHERE community = ? AND id = ?", (cn, pid)
        ).fetchone()[0]
        if twins > 1:
            _flag(db, c, "collision")
    if not orphan and (old is None or old[2] != parent) and _cycles(db, cn, pid, parent):
        _flag(db, c, "cycle")


def _drop_post(db: Any, c: bytes, owner: bytes, local: str) -> None:
    pid = owner[:4].hex() + local
    cn, an = known_num(db, c), known_num(db, owner)
    if cn is None or an is None:
        return
    gone = db.execute(
        "DELETE FROM ix_posts WHERE community = ? AND id = ? AND author = ?", (cn, pid, an)
    ).rowcount
    if gone and not _exists(db, cn, pid):
        db.execute(
            "UPDATE ix_posts INDEXED BY ix_posts_by_parent SET orphan = 1"
            " WHERE community = ? AND parent = ? AND orphan = 0",
            (cn, pid),
        )


def _exists(db: Any, cn: int, pid: str) -> bool:
    return (
        db.execute("SELECT 1 FROM ix_posts WHERE community = ? AND id = ?", (cn, pid)).fetchone()
        is not None
    )


def _post_keys(db: Any, c: bytes, owner: bytes) -> list[str]:
    """The feed keys of one author's indexed posts (their ids without the key prefix)."""
    cn, an = known_num(db, c), known_num(db, owner)
    if cn is None or an is None:
        return []
    low, high = _prefix_range(owner)
    return [
        r[0]
        for r in db.execute(
            "SELECT substr(id, 9) FROM ix_posts INDEXED BY ix_posts_key"
            " WHERE community = ? AND id >= ? AND id < ? AND author = ?",
            (cn, low, high, an),
        )
    ]


def _cycles(
    db: Any, cn: int, start: str, parent: str | None, ends: dict[str, int] | None = None
) -> bool:
    """Whether following parents from `start` comes back to it (or goes on too long).

    `ends` (shared between calls): for ids whose chain was followed to its end, how many
    ids that chain visits; a walk reaching one of them stops there with the same answer."""
    cur, steps, path = parent, 0, []
    while cur is not None:
        if cur == start or steps > MAX_CHAIN:
            return True
        if ends is not None and cur in ends:
            if steps + ends[cur] - 1 > MAX_CHAIN:
                return True
            steps += ends[cur]
            break
        path.append(cur)
        row = db.execute(
            "SELECT parent FROM ix_posts WHERE community = ? AND id = ?", (cn, cur)
        ).fetchone()
        cur = row[0] if row else None
        steps += 1
    if ends is not None and len(ends) < MAX_ENDS:
        for i, pid in enumerate(path):
            ends[pid] = steps - i
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
        settle(db)
        for local in _post_keys(db, c, o):
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
    settle(db)
    db.execute("DELETE FROM ix_posts WHERE community = ?", (known_num(db, community),))
    for table in (*TABLES[1:], "ix_flags", "ix_docs"):
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


def to_read(docs: Documents, community: bytes) -> int:
    """Bytes of saved documents `refresh` would read for this community now (0: its
    indexes are up to date), so a caller can tell a long first indexing (a store an
    older p2p wrote, with another index layout) from the usual nothing."""
    db = docs.store.db
    if _fresh.get(docs, {}).get(community) == _stamp(db):
        return 0
    todo = stale(db, community)
    if not todo:
        return 0
    sizes = _sizes(db, community)
    return sum(sizes.get(r[0], 0) for r in todo) or 1


def _sizes(db: Any, community: bytes) -> dict[bytes, int]:
    """Each stored document of a community: the bytes a refresh reads of it."""
    return dict(
        db.execute("SELECT id, length(snapshot) FROM docs WHERE community = ?", (community,))
    )


def refresh(docs: Documents, community: bytes, progress: Progress | None = None) -> int:
    """Bring one community's indexes up to date (first use, or after a bypass); how many
    documents were read."""
    db = docs.store.db
    if db.execute("SELECT 1 FROM ix_deferred").fetchone():  # left unsettled: settle first
        with docs.store.transaction():
            settle(db)
    memo = _fresh.setdefault(docs, {})
    if memo.get(community) == _stamp(db):
        return 0  # nothing was written to this store since the last look
    if not stale(db, community):
        memo[community] = _stamp(db)
        return 0
    n = 0
    with docs.store.transaction() as db:
        todo = stale(db, community)
        sizes = _sizes(db, community)
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
            # read once here: caching every document of a big community would hold it all
            # in memory at once (a 1M-post rebuild peaked at 515 MiB)
            docs.forget(doc_id)
            del doc
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
