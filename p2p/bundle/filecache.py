"""The digests of bundle files already read, keyed by what `stat` says of them.

Why: `usb sync` names each bundle on a stick by its file's BLAKE3 (its name
digest, docs/bundle-format.md §5; rows written before container version 2 hold
its SHA-256), to skip those already imported or written by this home.
Hashing every bundle on the stick at every sync reads all of it again; a file
whose size, modification and change times and inode are those of a file
already hashed here has its digest looked up instead. A file not known here
is imported directly and named by the digest its import computed as it read
it. Skipping is never unsafe (an import is always verified); at worst a
bundle replaced with the very same stat is not read again.
"""

from __future__ import annotations

import os
from pathlib import Path

from p2p.home import Home

MAX_ROWS = 4096  # files remembered; the oldest are forgotten past it


def _key(path: Path) -> tuple[str, int, int, int, int]:
    st = os.stat(path)
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def known(home: Home, files: list[Path]) -> bytes | None:
    """The digest of this single-file bundle as read before, if it is unchanged."""
    if len(files) != 1:
        return None  # parts: hashed as before
    try:
        path, size, mtime, ctime, ino = _key(files[0])
    except OSError:
        return None
    row = home.store.db.execute(
        "SELECT sha256 FROM bundle_files WHERE path = ? AND size = ? AND mtime_ns = ?"
        " AND ctime_ns = ? AND ino = ?",
        (path, size, mtime, ctime, ino),
    ).fetchone()
    return bytes(row[0]) if row else None


def remember(home: Home, files: list[Path], digest: bytes) -> None:
    """Note the digest of a single-file bundle just read (unless it changed since)."""
    if len(files) != 1:
        return
    try:
        key = _key(files[0])
    except OSError:
        return
    with home.store.transaction() as db:
        db.execute(
            "INSERT OR REPLACE INTO bundle_files (path, size, mtime_ns, ctime_ns, ino, sha256)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (*key, digest),
        )
        db.execute(
            "DELETE FROM bundle_files WHERE rowid NOT IN"
            " (SELECT rowid FROM bundle_files ORDER BY rowid DESC LIMIT ?)",
            (MAX_ROWS,),
        )
