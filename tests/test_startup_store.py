"""Opening a store that is already current runs no schema script and writes nothing.

Every command opens the store; a view (feed, search) then needs no write lock, so
it opens at once while another process imports, and pays no fsync. A store made
by an older schema or index layout is still brought up to date on open.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from p2p import store as st
from p2p.store import Store


def tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_current_store_opens_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "p2p.db"
    Store(path).close()
    again = Store(path, create=False)
    assert again.db.total_changes == 0  # no INSERT into meta, no CREATE
    assert again.db.execute("PRAGMA user_version").fetchone()[0] == st.STAMP
    again.close()


def test_a_current_store_opens_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "p2p.db"
    Store(path).close()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # an import holds the write lock
    writer.execute("INSERT INTO meta (key, value) VALUES ('busy', 1)")
    opened: list[Store] = []
    t = threading.Thread(target=lambda: opened.append(Store(path, create=False)), daemon=True)
    t.start()
    t.join(timeout=10)  # the old open waited for the lock (busy_timeout: 60 s)
    writer.execute("ROLLBACK")
    writer.close()
    assert opened, "opening a current store waited for another writer"
    assert opened[0].db.execute("SELECT count(*) FROM docs").fetchone() == (0,)
    opened[0].close()


def test_a_store_from_an_older_schema_gets_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "p2p.db"
    Store(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DROP TABLE blob_carried")  # a table an older p2p did not have
    db.execute("PRAGMA user_version = 0")  # ...and its stamp (none)
    db.close()
    s = Store(path, create=False)
    assert "blob_carried" in tables(s.db)
    assert s.db.execute("PRAGMA user_version").fetchone()[0] == st.STAMP
    s.close()


def test_an_old_index_layout_left_by_an_older_p2p_is_dropped_on_open(tmp_path: Path) -> None:
    """An older p2p leaves the stamp alone but writes its own index layout: the stamp
    alone must not let the open skip dropping it."""
    path = tmp_path / "p2p.db"
    Store(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("INSERT INTO ix_keys (key) VALUES (x'00')")
    db.execute("UPDATE meta SET value = 1 WHERE key = 'index'")
    db.close()
    s = Store(path, create=False)
    assert s.db.execute("SELECT count(*) FROM ix_keys").fetchone() == (0,)  # made anew
    assert s.db.execute("SELECT value FROM meta WHERE key = 'index'").fetchone() == (
        st.INDEX_VERSION,
    )
    s.close()
