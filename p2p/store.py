"""The one SQLite database that holds everything a home knows.

WAL mode, and every write inside `transaction()`: a crash at any instant
leaves the store as it was before or after a write, never between.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from p2p.errors import NoHome, StoreCorrupt

SCHEMA_VERSION = 1
# The layout of the derived ix_* tables. A store written with another layout has them
# dropped and made anew when it opens; views then index every document again (they are
# derived from the documents: nothing is lost). 2: ix_posts holds numbers (ix_keys) for
# community and author, no `local`, one unique (community, id, author) index.
INDEX_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS identity (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    public_key BLOB NOT NULL,
    age_recipient TEXT NOT NULL,
    sealed BLOB NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS communities (
    id BLOB PRIMARY KEY,
    owner BLOB NOT NULL,
    salt BLOB NOT NULL,
    private INTEGER NOT NULL,
    secret TEXT,
    name TEXT NOT NULL,
    joined INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS docs (
    id BLOB PRIMARY KEY,
    community BLOB NOT NULL,
    kind TEXT NOT NULL,
    owner BLOB NOT NULL,
    snapshot BLOB NOT NULL,
    heads BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS docs_by_community ON docs (community);
-- what a view checks before reading its indexes (index.update.stale), without reading
-- `heads` from behind each snapshot's overflow pages (2.5-8 ms at 300k posts)
CREATE INDEX IF NOT EXISTS docs_heads ON docs (community, id, kind, owner, heads);
CREATE TABLE IF NOT EXISTS changes (
    doc BLOB NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (doc, n)
);
-- per author-owned document: its owner's latest change, when that change is its one head
-- (a row whose hash is not the document's only head says nothing: see Documents.tip)
CREATE TABLE IF NOT EXISTS doc_tips (
    doc BLOB PRIMARY KEY,
    hash BLOB NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sigs (
    doc BLOB NOT NULL,
    hash BLOB NOT NULL,
    signer BLOB NOT NULL,
    sig BLOB NOT NULL,
    PRIMARY KEY (doc, hash, signer)
);
CREATE TABLE IF NOT EXISTS pending (
    doc BLOB NOT NULL,
    hash BLOB NOT NULL,
    community BLOB NOT NULL,
    kind TEXT NOT NULL,
    owner BLOB NOT NULL,
    data BLOB NOT NULL,
    received INTEGER NOT NULL,
    PRIMARY KEY (doc, hash)
);
CREATE TABLE IF NOT EXISTS pending_sigs (
    doc BLOB NOT NULL,
    hash BLOB NOT NULL,
    signer BLOB NOT NULL,
    sig BLOB NOT NULL,
    PRIMARY KEY (doc, hash, signer)
);
CREATE TABLE IF NOT EXISTS forks (
    doc BLOB NOT NULL,
    actor BLOB NOT NULL,
    seq INTEGER NOT NULL,
    kept BLOB NOT NULL,
    dropped BLOB NOT NULL,
    proof BLOB NOT NULL,
    detected INTEGER NOT NULL,
    PRIMARY KEY (doc, actor, seq, dropped)
);
CREATE TABLE IF NOT EXISTS forks_held (
    doc BLOB NOT NULL,
    hash BLOB NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (doc, hash)
);
CREATE TABLE IF NOT EXISTS set_aside (
    doc BLOB NOT NULL,
    community BLOB NOT NULL,
    kind TEXT NOT NULL,
    owner BLOB NOT NULL,
    data BLOB NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS peers (
    public_key BLOB PRIMARY KEY,
    last_seen INTEGER NOT NULL,
    via TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS peer_heads (
    peer BLOB NOT NULL,
    doc BLOB NOT NULL,
    heads BLOB NOT NULL,
    PRIMARY KEY (peer, doc)
);
CREATE TABLE IF NOT EXISTS lan_addresses (
    public_key BLOB PRIMARY KEY,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bundles_seen (
    sha256 BLOB PRIMARY KEY,
    exporter BLOB,
    at INTEGER NOT NULL
);
-- digests of bundle files read (p2p/bundle/filecache.py): a cache, safe to lose
CREATE TABLE IF NOT EXISTS bundle_files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    sha256 BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS bundles_written (
    name TEXT NOT NULL,
    dir TEXT NOT NULL,
    sha256 BLOB NOT NULL,
    domain TEXT NOT NULL,
    complete INTEGER NOT NULL,
    inventory BLOB NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (dir, name)
);
-- derived, rebuildable indexes (p2p/index/): the documents stay the source of truth
CREATE TABLE IF NOT EXISTS ix_docs (
    doc BLOB PRIMARY KEY,
    community BLOB NOT NULL,
    kind TEXT NOT NULL,
    owner BLOB NOT NULL,
    heads BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS ix_bad (
    doc BLOB NOT NULL,
    top TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (doc, top, key)
);
-- set while ix_posts' secondary indexes are built once after a bulk insert instead of row by
-- row (p2p/index/update.py): rows numbered above `base` still wait for full-text and linking
CREATE TABLE IF NOT EXISTS ix_deferred (base INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ix_flags (
    community BLOB NOT NULL,
    flag TEXT NOT NULL,
    PRIMARY KEY (community, flag)
);
-- community ids and member keys as small numbers: ix_posts holds these, not 32-byte keys
CREATE TABLE IF NOT EXISTS ix_keys (k INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS ix_posts (
    n INTEGER PRIMARY KEY,
    community INTEGER NOT NULL,  -- ix_keys.k
    author INTEGER NOT NULL,  -- ix_keys.k
    id TEXT NOT NULL,  -- the author's key prefix (8 hex digits) + the post's key in the feed
    ts INTEGER NOT NULL,
    parent TEXT,
    text TEXT NOT NULL,
    edited INTEGER,
    deleted INTEGER NOT NULL,
    orphan INTEGER NOT NULL,
    attachments BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS ix_posts_key ON ix_posts (community, id, author);
CREATE INDEX IF NOT EXISTS ix_posts_by_parent ON ix_posts (community, parent)
    WHERE parent IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_posts_roots ON ix_posts (community, ts, id, author)
    WHERE orphan = 1;
-- only the posts naming attachments: what an export's blob records read (O(attachments))
CREATE INDEX IF NOT EXISTS ix_posts_attached ON ix_posts (community)
    WHERE attachments IS NOT NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS ix_posts_fts USING fts5 (
    text, content = 'ix_posts', content_rowid = 'n'
);
CREATE TRIGGER IF NOT EXISTS ix_posts_ai AFTER INSERT ON ix_posts BEGIN
    INSERT INTO ix_posts_fts (rowid, text) VALUES (new.n, new.text);
END;
CREATE TRIGGER IF NOT EXISTS ix_posts_ad AFTER DELETE ON ix_posts BEGIN
    INSERT INTO ix_posts_fts (ix_posts_fts, rowid, text) VALUES ('delete', old.n, old.text);
END;
CREATE TRIGGER IF NOT EXISTS ix_posts_au AFTER UPDATE OF text ON ix_posts BEGIN
    INSERT INTO ix_posts_fts (ix_posts_fts, rowid, text) VALUES ('delete', old.n, old.text);
    INSERT INTO ix_posts_fts (rowid, text) VALUES (new.n, new.text);
END;
CREATE TABLE IF NOT EXISTS ix_reactions (
    community BLOB NOT NULL,
    reactor BLOB NOT NULL,
    target TEXT NOT NULL,
    emoji TEXT NOT NULL,
    PRIMARY KEY (community, reactor, target, emoji)
);
CREATE INDEX IF NOT EXISTS ix_reactions_by_target ON ix_reactions (community, target);
CREATE TABLE IF NOT EXISTS ix_chat (
    n INTEGER PRIMARY KEY,
    community BLOB NOT NULL,
    author BLOB NOT NULL,
    local TEXT NOT NULL,
    id TEXT NOT NULL,
    room TEXT NOT NULL,
    text TEXT NOT NULL,
    ts INTEGER NOT NULL,
    attachments BLOB,
    UNIQUE (community, author, local)
);
CREATE INDEX IF NOT EXISTS ix_chat_by_room ON ix_chat (community, room, ts);
CREATE INDEX IF NOT EXISTS ix_chat_by_id ON ix_chat (community, id);
CREATE INDEX IF NOT EXISTS ix_chat_attached ON ix_chat (community)
    WHERE attachments IS NOT NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS ix_chat_fts USING fts5 (
    text, content = 'ix_chat', content_rowid = 'n'
);
CREATE TRIGGER IF NOT EXISTS ix_chat_ai AFTER INSERT ON ix_chat BEGIN
    INSERT INTO ix_chat_fts (rowid, text) VALUES (new.n, new.text);
END;
CREATE TRIGGER IF NOT EXISTS ix_chat_ad AFTER DELETE ON ix_chat BEGIN
    INSERT INTO ix_chat_fts (ix_chat_fts, rowid, text) VALUES ('delete', old.n, old.text);
END;
CREATE TRIGGER IF NOT EXISTS ix_chat_au AFTER UPDATE OF text ON ix_chat BEGIN
    INSERT INTO ix_chat_fts (ix_chat_fts, rowid, text) VALUES ('delete', old.n, old.text);
    INSERT INTO ix_chat_fts (rowid, text) VALUES (new.n, new.text);
END;
CREATE TABLE IF NOT EXISTS ix_dm (
    community BLOB NOT NULL,
    author BLOB NOT NULL,
    local TEXT NOT NULL,
    ts INTEGER NOT NULL,
    box BLOB NOT NULL,
    PRIMARY KEY (community, author, local)
);
CREATE TABLE IF NOT EXISTS ix_profiles (
    community BLOB NOT NULL,
    member BLOB NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (community, member)
);
CREATE TABLE IF NOT EXISTS ix_moderation (
    community BLOB NOT NULL,
    what TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT,
    PRIMARY KEY (community, what, key)
);
CREATE TABLE IF NOT EXISTS inventories (
    owner BLOB NOT NULL,
    digest BLOB NOT NULL,
    scope BLOB NOT NULL,
    inventory BLOB NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (owner, digest)
);
CREATE TABLE IF NOT EXISTS bundle_inventories (
    sha256 BLOB PRIMARY KEY,
    owner BLOB NOT NULL,
    digest BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS bundle_contents (
    sha256 BLOB NOT NULL,
    doc BLOB NOT NULL,
    heads BLOB NOT NULL,
    PRIMARY KEY (sha256, doc)
);
CREATE TABLE IF NOT EXISTS blob_manifests (
    id BLOB PRIMARY KEY,
    data BLOB NOT NULL,
    size INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    received INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS blob_parts (
    manifest BLOB NOT NULL,
    n INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (manifest, n)
);
CREATE INDEX IF NOT EXISTS blob_parts_by_hash ON blob_parts (hash);
CREATE TABLE IF NOT EXISTS blob_chunks (
    hash BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    received INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS blob_peer_have (
    peer BLOB NOT NULL,
    id BLOB NOT NULL,
    bits BLOB NOT NULL,
    PRIMARY KEY (peer, id)
);
CREATE TABLE IF NOT EXISTS blob_wants (
    peer BLOB NOT NULL,
    id BLOB NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (peer, id)
);
CREATE TABLE IF NOT EXISTS blob_carried (
    bundle BLOB NOT NULL,
    id BLOB NOT NULL,
    bits BLOB NOT NULL,
    PRIMARY KEY (bundle, id)
);
"""


STORE_NAME = "p2p.db"
DIR_MODE = 0o700
FILE_MODE = 0o600
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB (https://sqlite.org/rescode.html)


def statements(script: str) -> list[str]:
    """The SQL statements of a script (a trigger body's `;` does not end one)."""
    out, part = [], ""
    for piece in script.split(";"):
        part += piece + ";"
        if sqlite3.complete_statement(part):
            if part.strip(" \n;"):
                out.append(part)
            part = ""
    return out


def _private_dir(folder: Path) -> None:
    """Create `folder` (and missing parents) owner-only; an existing folder is left alone."""
    missing = []
    for p in (folder, *folder.parents):
        if p.exists():
            break
        missing.append(p)
    for p in reversed(missing):
        try:
            p.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(p, DIR_MODE)  # mkdir's mode is filtered by the umask; chmod is not


def _private_files(path: Path) -> None:
    """The store and its WAL/SHM companions are the owner's only, whatever the umask."""
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        if stat.S_IMODE(st.st_mode) != FILE_MODE and st.st_uid == os.getuid():
            os.chmod(p, FILE_MODE)


# What a store that needs nothing made carries in its header (`PRAGMA user_version`):
# a digest of the schema script and the index layout. Then opening it runs no script
# and writes nothing (no write lock, no fsync for a view); any change to SCHEMA or
# INDEX_VERSION changes the stamp, and the next open brings the store up to date.
STAMP = zlib.crc32(f"{SCHEMA}{SCHEMA_VERSION}/{INDEX_VERSION}".encode()) & 0x7FFFFFFF or 1


def _current(db: sqlite3.Connection) -> bool:
    """Whether the store was made current by this schema and index layout. The layout
    is read too: an older p2p (which leaves the stamp alone) may have dropped ix_*.
    And a bulk insert committed unsettled (ix_deferred) lacks indexes SCHEMA makes."""
    if db.execute("PRAGMA user_version").fetchone()[0] != STAMP:
        return False
    row = db.execute("SELECT value FROM meta WHERE key = 'index'").fetchone()
    if row is None or row[0] != INDEX_VERSION:
        return False
    return db.execute("SELECT 1 FROM ix_deferred LIMIT 1").fetchone() is None


def _drop_old_indexes(db: sqlite3.Connection) -> None:
    """Drop every ix_* table (with its indexes and triggers) of a store whose index layout
    is not INDEX_VERSION: SCHEMA then makes them anew, and views re-index on first use."""
    tables = dict(
        db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table'"
            " AND substr(name, 1, 3) = 'ix_'"
        ).fetchall()
    )
    if not tables:
        return  # a new store
    row = db.execute("SELECT value FROM meta WHERE key = 'index'").fetchone()
    if row is not None and row[0] == INDEX_VERSION:
        return
    for name, sql in tables.items():  # full-text tables first: they drop their own parts
        if sql.upper().startswith("CREATE VIRTUAL"):
            db.execute(f"DROP TABLE IF EXISTS {name}")
    for (name,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 3) = 'ix_'"
    ).fetchall():
        db.execute(f"DROP TABLE IF EXISTS {name}")


class Connection(sqlite3.Connection):
    """A connection that knows whether a `Store.transaction` is open, and what must run
    just before it commits (work deferred to the end of the transaction)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.depth = 0
        self.before_commit: list[Callable[[sqlite3.Connection], None]] = []


class Store:
    """A connection to a home's database.

    `create=False` never makes a file: a missing store raises `NoHome`. A file
    that is not a SQLite database, or a damaged one, raises `StoreCorrupt`.
    """

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = path
        if create:
            _private_dir(path.parent)
            try:  # the file exists 0600 before SQLite opens it: its WAL and SHM copy that mode
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
            except FileExistsError:
                pass
        elif not path.is_file():
            raise NoHome(f"no p2p data store at {path}", path=str(path))
        try:
            self.db = sqlite3.connect(
                f"{path.absolute().as_uri()}?mode=rw",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                factory=Connection,
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA busy_timeout=60000")  # another process may be importing
            self._depth = 0
            if not _current(self.db):
                self._make_current()
        except sqlite3.DatabaseError as exc:
            if is_corrupt(exc):
                raise StoreCorrupt(path=str(path)) from exc
            raise
        _private_files(path)

    def _make_current(self) -> None:
        """Create what SCHEMA lists and is missing, drop an old index layout, and stamp
        the store (`PRAGMA user_version`) so the next open can skip all of it."""
        with self.transaction():
            _drop_old_indexes(self.db)
            for statement in statements(SCHEMA):
                self.db.execute(statement)
            self.db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)",
                (SCHEMA_VERSION,),
            )
            self.db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('index', ?)",
                (INDEX_VERSION,),
            )
            self.db.execute(f"PRAGMA user_version = {STAMP}")

    @property
    def _depth(self) -> int:
        return self.db.depth

    @_depth.setter
    def _depth(self, value: int) -> None:
        self.db.depth = value

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One atomic unit of work; nested calls join the outer one. Work registered in
        `db.before_commit` runs just before the outermost one commits (inside it)."""
        if self._depth:
            self._depth += 1
            try:
                yield self.db
            finally:
                self._depth -= 1
            return
        self._depth = 1
        self.db.before_commit.clear()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            while self.db.before_commit:
                self.db.before_commit.pop(0)(self.db)
        except BaseException:
            self.db.before_commit.clear()
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")
        finally:
            self._depth = 0

    def close(self) -> None:
        self.db.close()


def is_corrupt(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the file is not a database, or a damaged one."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _CORRUPT_CODES
    text = str(exc)
    return "not a database" in text or "malformed" in text
