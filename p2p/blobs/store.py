"""Chunks on disk, and in SQLite which chunks and manifests a home holds.

Chunks live under `<home>/blobs/ab/cdef...` (named by their BLAKE3 hash; files
0600, folders 0700), so a file named by many posts, or many manifests sharing
chunks, is stored once. A chunk enters its place only after it hashed to what
its manifest says (a bundle's chunks wait in `Staging` until its trailer
holds), and is made durable before its row is committed; the rows are the
truth (a file without a row is debris that `sweep` removes). Everything moves
one chunk (1 MiB) at a time: memory stays flat whatever the attachment's size.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from p2p.blobs import manifest as mf
from p2p.blobs.manifest import Manifest
from p2p.blobs.seal import Sealer
from p2p.blobs.staged import Staged
from p2p.direct import DirectReader, DirectWriter
from p2p.errors import AttachmentIncomplete, BadAttachment
from p2p.home import Home

UNREFERENCED_BUDGET = 256 * 1024 * 1024  # bytes kept of attachments no post names
BATCH = 32  # chunks written before they are synced together
WRITE_BEHIND = 4  # chunks handed to the writing threads and not yet written
WRITERS = 2  # chunk files written at once (1 MiB direct writes, a GiB: 0.6-0.8 s, alone 0.9-1.2)
DEBRIS_AGE = 600  # seconds before an unregistered chunk file counts as debris
SWEEP_EVERY = 3600  # seconds between walks of the chunk folders for debris


def _syncfs(path: Path) -> bool:
    """syncfs(2) on Linux; False where it is missing (then callers fsync file by file)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        return fn(fd) == 0
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Presence:
    have: int
    total: int

    @property
    def state(self) -> str:
        if self.total and self.have == self.total:
            return "whole"
        return "partial" if self.have else "absent"

    @property
    def percent(self) -> int:
        return 100 * self.have // self.total if self.total else 0


class BlobStore:
    def __init__(self, home: Home) -> None:
        self.home = home
        self.db = home.store.db
        self.root = home.path / "blobs"
        self._manifests: dict[bytes, Manifest] = {}
        self._unsynced: list[Path] = []
        self._pending: list[tuple[bytes, int]] = []  # accepted, not yet registered
        self._pending_set: set[bytes] = set()  # their hashes (a GiB is 1024 of them)
        self._local = threading.local()  # one aligned buffer per writing thread
        self._reader: DirectReader | None = None

    # --- files -------------------------------------------------------------

    def path(self, chunk_hash: bytes) -> Path:
        h = chunk_hash.hex()
        return self.root / h[:2] / h[2:]

    def _write_chunk(self, chunk_hash: bytes, data: bytes, sync: bool = True) -> None:
        """Write a chunk file; with sync=False it is made durable by `flush()`
        (which must run before its row commits) so the disk can write many at once."""
        dest = self.path(chunk_hash)
        if not self.root.exists():
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not dest.parent.exists():
            dest.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.urandom(4).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        writer: DirectWriter | None = getattr(self._local, "writer", None)
        try:
            try:
                # past the page cache (p2p/direct.py): a GiB of chunks costs a
                # fraction of the kernel time, and durability is unchanged
                if writer is None:
                    writer = self._local.writer = DirectWriter(fd, mf.CHUNK + mf.TAG)
                else:
                    writer.reopen(fd)
                writer.write(data)
                writer.flush()
                if sync:
                    os.fdatasync(fd)
            finally:
                if writer is not None:
                    writer.used = 0  # a failed write leaves nothing for the next file
                os.close(fd)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if not sync:
            self._unsynced.append(dest)

    def accept_staged(self, aid: bytes, index: int, staged: Staged) -> bool:
        """`accept_chunk` for a chunk a proven bundle's first reading set aside
        (`Staging`): the same checks, by its size and hash, then its file is moved
        into place. Counts as present after `commit()`."""
        expected = self._expected(aid, index, staged.size)
        if expected is None:
            return False
        m, want = expected
        if staged.hash != want:
            raise _forged(m, index)
        if staged.path is None or not staged.path.exists():
            return False  # it was here when staged (and has gone since): a later sync brings it
        dest = self.path(want)
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.replace(staged.path, dest)
        self._unsynced.append(dest)
        self._pending.append((want, staged.size))
        self._pending_set.add(want)
        return True

    def flush(self) -> None:
        """Make every chunk written with sync=False durable (before its row commits):
        one syncfs(2) of the store's file system where the platform has it (a single
        journal commit for the whole batch), else an fdatasync per file."""
        if not self._unsynced:
            return
        if not _syncfs(self.root):
            for path in self._unsynced:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
        self._unsynced.clear()

    def read_chunk(self, chunk_hash: bytes) -> bytes | None:
        """A stored chunk, checked against its hash; None (and forgotten) if damaged."""
        if self._reader is None:
            self._reader = DirectReader(mf.CHUNK + mf.TAG)
        try:  # past the page cache, as written (p2p/direct.py)
            data = self._reader.read(self.path(chunk_hash))
        except OSError:
            data = None
        if data is None or mf.digest(data) != chunk_hash:
            self._forget(chunk_hash)
            return None
        return data

    def _forget(self, chunk_hash: bytes) -> None:
        """A chunk file that is gone or damaged is no longer held."""
        with self.home.store.transaction() as db:
            db.execute("DELETE FROM blob_chunks WHERE hash = ?", (chunk_hash,))

    def read_ahead(self) -> ReadAhead:
        """Read chunks one step ahead on a helper thread (see ReadAhead)."""
        return ReadAhead(self)

    # --- manifests ---------------------------------------------------------

    def manifest(self, aid: bytes) -> Manifest | None:
        if aid in self._manifests:
            return self._manifests[aid]
        row = self.db.execute("SELECT data FROM blob_manifests WHERE id = ?", (aid,)).fetchone()
        if row is None:
            return None
        if len(self._manifests) > 64:
            self._manifests.clear()
        self._manifests[aid] = m = mf.parse(row[0])
        return m

    def manifest_bytes(self, aid: bytes) -> bytes | None:
        row = self.db.execute("SELECT data FROM blob_manifests WHERE id = ?", (aid,)).fetchone()
        return bytes(row[0]) if row else None

    def put_manifest(self, data: bytes, aid: bytes | None = None) -> tuple[bytes, Manifest]:
        """Keep a manifest (checked); `aid`, when given, must be its hash."""
        m = mf.parse(data)
        got = mf.digest(data)
        if aid is not None and got != aid:
            raise BadAttachment("an attachment manifest does not match its id; refused")
        with self.home.store.transaction() as db:
            if db.execute("SELECT 1 FROM blob_manifests WHERE id = ?", (got,)).fetchone():
                return got, m
            db.execute(
                "INSERT INTO blob_manifests (id, data, size, chunks, received)"
                " VALUES (?, ?, ?, ?, ?)",
                (got, data, m.stored_size, len(m.hashes), int(time.time())),
            )
            db.executemany(
                "INSERT INTO blob_parts (manifest, n, hash) VALUES (?, ?, ?)",
                [(got, i, h) for i, h in enumerate(m.hashes)],
            )
        return got, m

    def has_chunk(self, chunk_hash: bytes) -> bool:
        if chunk_hash in self._pending_set:
            return True
        q = "SELECT 1 FROM blob_chunks WHERE hash = ?"
        return self.db.execute(q, (chunk_hash,)).fetchone() is not None

    def _expected(self, aid: bytes, index: int, size: int) -> tuple[Manifest, bytes] | None:
        """The manifest and the hash chunk `index` of `aid` must have, checked by index
        and size; None when that chunk is already here. BadAttachment else."""
        m = self.manifest(aid)
        if m is None:
            raise BadAttachment("a chunk arrived for an attachment whose manifest is unknown")
        if type(index) is not int or not 0 <= index < len(m.hashes):
            raise BadAttachment("a chunk's index is outside its attachment")
        if size != m.chunk_len(index):
            raise BadAttachment(
                f"chunk {index} of {m.name!r} has {size} bytes where its manifest "
                f"says {m.chunk_len(index)}; refused"
            )
        want = m.hashes[index]
        return None if self.has_chunk(want) else (m, want)

    def accept_chunk(self, aid: bytes, index: int, data: bytes, batch: bool = False) -> bool:
        """Store chunk `index` of attachment `aid` if it hashes to what the manifest
        says; True when it was new. BadAttachment for anything else. With `batch`
        the chunk counts as present only after `commit()` (many synced at once)."""
        expected = self._expected(aid, index, len(data))
        if expected is None:
            return False
        m, want = expected
        if mf.digest(data) != want:
            raise _forged(m, index)
        self._write_chunk(want, data, sync=False)
        self._pending.append((want, len(data)))
        self._pending_set.add(want)
        if not batch or len(self._unsynced) >= BATCH:
            self.commit()
        return True

    def commit(self) -> None:
        """Register the chunks accepted so far, once they are durable."""
        self.flush()
        now = int(time.time())
        with self.home.store.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO blob_chunks (hash, size, received) VALUES (?, ?, ?)",
                [(h, n, now) for h, n in self._pending],
            )
        self._pending.clear()
        self._pending_set.clear()

    # --- adding local files ------------------------------------------------

    def add(
        self,
        src: BinaryIO,
        size: int,
        name: str,
        mime: str,
        key: bytes | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[bytes, Manifest]:
        """Chunk (and, with `key`, seal) a file into the store; returns its id.
        `progress(bytes done)` after each chunk."""
        if size > mf.MAX_SIZE:
            raise BadAttachment(f"attachments are limited to {mf.MAX_SIZE // 1024**3} GiB")
        sealer = Sealer(key) if key is not None else None
        count = mf.chunk_count(size)
        hashes: list[bytes] = []
        fresh: list[tuple[bytes, int]] = []
        seen: set[bytes] = set()
        # Chunk files are written by WRITERS helper threads while this one reads,
        # seals and hashes the next (a direct write waits on the device, not the
        # CPU; two at once keep it busier); at most WRITE_BEHIND chunks in flight.
        # One flush at the end: chunks go past the page cache (nothing dirty piles
        # up) and no row names them before it, so a crash leaves only debris.
        writes: deque[Future[None]] = deque()
        with ThreadPoolExecutor(WRITERS, thread_name_prefix="chunk-write") as pool:
            try:
                for i in range(count):
                    plain = src.read(min(mf.CHUNK, size - i * mf.CHUNK))
                    if len(plain) != min(mf.CHUNK, size - i * mf.CHUNK):
                        raise BadAttachment(f"{name} changed while it was being read; try again")
                    data = sealer.seal(i, i == count - 1, plain) if sealer else plain
                    h = mf.digest(data)
                    hashes.append(h)
                    if not self.has_chunk(h) and h not in seen:
                        while len(writes) >= WRITE_BEHIND:
                            writes.popleft().result()
                        writes.append(pool.submit(self._write_chunk, h, data, False))
                        fresh.append((h, len(data)))
                        seen.add(h)
                    if progress is not None:
                        progress(i * mf.CHUNK + len(plain))
                while writes:
                    writes.popleft().result()
            finally:
                for w in writes:
                    w.cancel()
        self.flush()
        m = Manifest(size, mf.clean_name(name), mime, tuple(hashes), sealer is not None)
        with self.home.store.transaction() as db:
            aid, _ = self.put_manifest(m.pack())
            now = int(time.time())
            db.executemany(
                "INSERT OR IGNORE INTO blob_chunks (hash, size, received) VALUES (?, ?, ?)",
                [(h, n, now) for h, n in fresh],
            )
        return aid, m

    # --- what is here ------------------------------------------------------

    def presence(self, aid: bytes) -> Presence | None:
        """None when even the manifest is missing."""
        row = self.db.execute("SELECT chunks FROM blob_manifests WHERE id = ?", (aid,)).fetchone()
        if row is None:
            return None
        (have,) = self.db.execute(
            "SELECT COUNT(DISTINCT p.n) FROM blob_parts p JOIN blob_chunks c ON c.hash = p.hash"
            " WHERE p.manifest = ?",
            (aid,),
        ).fetchone()
        return Presence(have, row[0])

    def bitmap(self, aid: bytes) -> bytes:
        """Which chunks are here, one bit per chunk (bit i: byte i//8, mask 0x80 >> i%8)."""
        row = self.db.execute("SELECT chunks FROM blob_manifests WHERE id = ?", (aid,)).fetchone()
        if row is None:
            return b""
        bits = bytearray((row[0] + 7) // 8)
        for (n,) in self.db.execute(
            "SELECT p.n FROM blob_parts p JOIN blob_chunks c ON c.hash = p.hash"
            " WHERE p.manifest = ?",
            (aid,),
        ):
            bits[n // 8] |= 0x80 >> (n % 8)
        return bytes(bits)

    def chunks(self, aid: bytes) -> Iterator[tuple[int, bytes]]:
        """The stored chunks of `aid` in order, each checked."""
        m = self.manifest(aid)
        if m is None:
            return
        for i, h in enumerate(m.hashes):
            data = self.read_chunk(h) if self.has_chunk(h) else None
            if data is not None:
                yield i, data

    def save(self, aid: bytes, out: BinaryIO, key: bytes | None = None) -> Manifest:
        """Write the attachment's plaintext to `out`, every chunk verified (and
        opened with `key` when sealed); AttachmentIncomplete if any is missing."""
        m = self.manifest(aid)
        p = self.presence(aid)
        if m is None or p is None or p.state != "whole":
            done = f"{p.percent}% here" if p else "not here at all"
            raise AttachmentIncomplete(
                f"this attachment is not complete ({done}); sync again to get the rest"
            )
        if m.sealed and key is None:
            raise BadAttachment("this attachment is encrypted and its post gives no key")
        sealer = Sealer(key) if m.sealed and key is not None else None
        last = len(m.hashes) - 1
        with self.read_ahead() as chunks:  # the next chunk is read while this one is written
            for i, h in enumerate(m.hashes):
                data = chunks.get(h, m.hashes[i + 1 : i + 1 + ReadAhead.DEPTH])
                if data is None:
                    raise AttachmentIncomplete(
                        f"chunk {i} of this attachment was damaged on disk and was dropped; "
                        "sync again to get it back"
                    )
                out.write(sealer.open(i, i == last, data) if sealer else data)
        return m

    # --- forgetting --------------------------------------------------------

    def collect(self, referenced: set[bytes], budget: int | None = None) -> int:
        """Drop attachments no post names beyond `budget` bytes (oldest first), then
        chunks no manifest lists; returns how many chunks were removed."""
        budget = UNREFERENCED_BUDGET if budget is None else budget
        rows = self.db.execute(
            "SELECT id, size FROM blob_manifests ORDER BY received DESC, id"
        ).fetchall()
        kept = 0
        drop = []
        for aid, size in rows:
            if aid in referenced:
                continue
            kept += size
            if kept > budget:
                drop.append(aid)
        with self.home.store.transaction() as db:
            for aid in drop:
                db.execute("DELETE FROM blob_parts WHERE manifest = ?", (aid,))
                db.execute("DELETE FROM blob_manifests WHERE id = ?", (aid,))
            orphans = [
                h
                for (h,) in db.execute(
                    "SELECT hash FROM blob_chunks WHERE hash NOT IN (SELECT hash FROM blob_parts)"
                ).fetchall()
            ]
            db.executemany("DELETE FROM blob_chunks WHERE hash = ?", [(h,) for h in orphans])
        for h in orphans:
            self.path(h).unlink(missing_ok=True)
        mark = self.root / ".swept"  # its mtime: the last sweep (not in the store)
        if self.root.is_dir() and (
            not mark.exists() or time.time() - mark.stat().st_mtime > SWEEP_EVERY
        ):
            swept = self.sweep()
            mark.touch(mode=0o600)
            os.utime(mark)
            return len(orphans) + swept
        return len(orphans)

    def sweep(self) -> int:
        """Remove chunk files no row registers (left by an import that rolled back)."""
        if not self.root.is_dir():
            return 0
        removed = 0
        now = time.time()
        for sub in self.root.iterdir():
            if sub.is_dir() and sub.name.startswith(STAGING):
                if now - sub.stat().st_mtime >= DEBRIS_AGE:  # an import that was killed
                    shutil.rmtree(sub, ignore_errors=True)
                    removed += 1
                continue
            if not sub.is_dir() or sub.name.startswith("."):
                continue
            for f in sub.iterdir():
                try:
                    h = bytes.fromhex(sub.name + f.name.lstrip("."))
                except ValueError:
                    h = b""
                fresh = now - f.stat().st_mtime < DEBRIS_AGE
                if not fresh and (len(h) != mf.HASH or f.name.startswith(".")):
                    f.unlink(missing_ok=True)
                    removed += 1
                elif len(h) == mf.HASH and not fresh and not self.has_chunk(h):
                    f.unlink(missing_ok=True)
                    removed += 1
        return removed


class ReadAhead:
    """Reads (and checks) the next chunks on helper threads while the caller sends
    this one: a direct read waits on the device, and one 1 MiB read at a time
    leaves the device idle between them (its queue empty), so up to DEPTH reads
    are in flight, on WORKERS threads. Memory stays flat: DEPTH chunks at most.
    `get(hash, then=next hashes)`; a damaged or missing chunk gives None and is
    forgotten, as `read_chunk` does (the store is only touched on this thread)."""

    DEPTH = 4
    WORKERS = 2

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.local = threading.local()  # each helper its own aligned buffer
        self.readers: list[DirectReader] = []
        self.pool = ThreadPoolExecutor(self.WORKERS, thread_name_prefix="chunk-read")
        self.ahead: deque[tuple[bytes, Future[bytes | None]]] = deque()

    def _load(self, chunk_hash: bytes) -> bytes | None:
        reader = getattr(self.local, "reader", None)
        if reader is None:
            reader = self.local.reader = DirectReader(mf.CHUNK + mf.TAG)
            self.readers.append(reader)
        try:
            data = reader.read(self.store.path(chunk_hash))
        except OSError:
            return None
        return data if data is not None and mf.digest(data) == chunk_hash else None

    def get(self, chunk_hash: bytes, then: bytes | Sequence[bytes] | None = None) -> bytes | None:
        """The chunk `chunk_hash`; `then`: the hash (or hashes, in order) the
        caller will ask for next, read meanwhile."""
        if self.ahead and self.ahead[0][0] == chunk_hash:
            pending = self.ahead.popleft()[1]
        else:
            self._drop()  # not wanted after all (a budget ran out)
            pending = self.pool.submit(self._load, chunk_hash)
        nexts = [then] if isinstance(then, bytes) else list(then or ())
        queued = [h for h, _f in self.ahead]
        if queued != nexts[: len(queued)]:
            self._drop()
            queued = []
        for h in nexts[len(queued) : self.DEPTH]:
            self.ahead.append((h, self.pool.submit(self._load, h)))
        data = pending.result()
        if data is None:
            self.store._forget(chunk_hash)
        return data

    def _drop(self) -> None:
        while self.ahead:
            self.ahead.popleft()[1].result()

    def close(self) -> None:
        self._drop()
        self.pool.shutdown()
        for reader in self.readers:
            reader.close()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


STAGING = ".staging-"  # prefix of the folders of chunks set aside while a bundle is proven


class Staging:
    """The `stage` of a bundle's proving pass (`container.BundleReader.prove`):
    each chunk is written once, as it is read, into a folder of its own under
    `blobs/` that nothing reads from. Only `BlobStore.accept_staged`, after the
    trailer has verified (and `settle()`), moves a chunk into place; `discard()`
    removes the rest (all of it when the bundle failed).

    Writes go past the page cache (O_DIRECT, p2p/direct.py), which makes each
    one wait for the device: WRITERS helper threads do them while the reading
    goes on (at most IN_FLIGHT chunks wait, so memory stays flat), and the one
    sync before the rows commit is short."""

    WRITERS = 2
    IN_FLIGHT = 4

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.dir: Path | None = None
        self._written: dict[bytes, Path] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future[None]] = deque()
        self._local = threading.local()  # one aligned buffer per helper thread

    def __call__(self, record: dict, digest: bytes) -> Staged | None:
        aid, n, data = record.get("id"), record.get("n"), record.get("data")
        if not isinstance(aid, bytes) or type(n) is not int or not isinstance(data, memoryview):
            return None  # malformed: decoded again once proven, and refused then
        path = self._written.get(digest)
        if path is None and not self.store.has_chunk(digest):
            path = self._write(digest, data)
        return Staged(len(data), digest, path)

    def _write(self, digest: bytes, data: memoryview) -> Path:
        if self.dir is None:
            self.store.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.dir = self.store.root / f"{STAGING}{os.urandom(6).hex()}"
            self.dir.mkdir(mode=0o700)
            self._pool = ThreadPoolExecutor(self.WRITERS, thread_name_prefix="staging")
        assert self._pool is not None
        path = self.dir / digest.hex()
        while len(self._pending) >= self.IN_FLIGHT:
            self._pending.popleft().result()  # raises a helper's error here
        self._pending.append(self._pool.submit(self._write_file, path, data))
        self._written[digest] = path
        return path

    def _write_file(self, path: Path, data: memoryview) -> None:
        writer: DirectWriter | None = getattr(self._local, "writer", None)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            if writer is None:
                writer = self._local.writer = DirectWriter(fd, mf.CHUNK + mf.TAG)
            else:
                writer.reopen(fd)
            writer.write(data)
            writer.flush()
        finally:
            if writer is not None:
                writer.used = 0  # a failed write leaves nothing for the next file
            os.close(fd)

    def settle(self) -> None:
        """Wait for every chunk written so far (raises the first write's error)."""
        while self._pending:
            self._pending.popleft().result()

    def discard(self) -> None:
        """Remove every chunk not moved into place, and the folder."""
        while self._pending:  # no helper may write into the folder after it is gone
            self._pending.popleft().exception()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        self._written.clear()


def _forged(m: Manifest, index: int) -> BadAttachment:
    return BadAttachment(
        f"chunk {index} of {m.name!r} does not match its hash (damaged or forged); refused"
    )
