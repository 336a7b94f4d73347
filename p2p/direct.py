"""Large sequential writes and reads that bypass the page cache (O_DIRECT).

Why: attachments and the bundles carrying them are written once and not read
again by this process, and on the machines we measured, pushing a GiB through
the page cache cost 1.5-3 s of kernel time (allocating and later reclaiming
the cache pages) against 0.2-0.4 s with O_DIRECT, for the same durability
(the caller still fsyncs: that flushes the device cache and the metadata). On
a stick it also makes progress honest: the bytes counted are on the device,
not parked in memory until the final fsync.

O_DIRECT needs the buffer, the file offset and the length aligned to the
device's block size; the writer gathers data into a page-aligned buffer and
writes whole blocks, and only the final partial block goes through the cache
(the descriptor then drops O_DIRECT). Where the file system refuses O_DIRECT
(tmpfs, some FUSE mounts, non-Linux), or a direct write fails with EINVAL, it
silently falls back to ordinary writes: same bytes, only slower.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the thread pool loads with the first background write
    from concurrent.futures import Future, ThreadPoolExecutor

ALIGN = 4096  # a multiple of every logical block size we meet (512, 4096)
BUFFER = 8 << 20  # bytes per write: large writes keep the device busy
# background writes on the device at once: two in flight write a GiB in 0.6-0.8 s here,
# one at a time (8 MiB each) in 1.0-1.1 s (`dd oflag=direct`, one stream against two)
IN_FLIGHT = 2
O_DIRECT = getattr(os, "O_DIRECT", 0)


def _set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for `fd`; False when the file system refuses it."""
    if not O_DIRECT:
        return False
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, (flags | O_DIRECT) if on else (flags & ~O_DIRECT))
    except OSError:
        return False
    return on


def _open_direct(path: os.PathLike | str) -> int:
    """`path` opened for reading with O_DIRECT; -1 where the file system refuses it."""
    if not O_DIRECT:
        return -1
    try:
        return os.open(path, os.O_RDONLY | O_DIRECT)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        return -1


def _write_all(fd: int, view: memoryview, offset: int) -> None:
    """pwrite until everything went (regular files may write short on signals)."""
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


class DirectWriter:
    """A write-only file object on `fd` that writes aligned blocks with O_DIRECT.

    `write` copies into a page-aligned buffer (never keeps the caller's object);
    with `background`, full buffers are written by helper threads (IN_FLIGHT at
    once, each at its own offset) while the caller fills another (a write waits
    on the device, not on the CPU).
    `flush` writes what is left, the unaligned tail through the cache; after it
    the file is written in the ordinary way. The caller owns `fd` (it fsyncs and
    closes it); writing starts at its current offset."""

    def __init__(self, fd: int, buffer: int = BUFFER, *, background: bool = False) -> None:
        self.size = max(ALIGN, buffer - buffer % ALIGN)
        self.view = memoryview(mmap.mmap(-1, self.size))  # page-aligned, as O_DIRECT needs
        self.background = background
        self._pool: ThreadPoolExecutor | None = None
        # background writes on the device (at most IN_FLIGHT), each with its buffer
        self._inflight: deque[tuple[Future[None], memoryview]] = deque()
        self._free: list[memoryview] = []  # buffers whose write is done
        self._fell_back = False
        self.used = 0
        self.reopen(fd)

    def reopen(self, fd: int) -> None:
        """Write another file with the same buffers (the last one must be flushed)."""
        assert self.used == 0 and not self._inflight, "flush() the previous file first"
        self.fd = fd
        self.offset = os.lseek(fd, 0, os.SEEK_CUR)  # where the next byte goes
        self.direct = _set_direct(fd, True)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        src = memoryview(data).cast("B")
        n = len(src)
        if not self.direct:
            self._wait()
            _write_all(self.fd, src, self.offset)
            self.offset += n
            return n
        pos = 0
        while pos < n:
            take = min(self.size - self.used, n - pos)
            self.view[self.used : self.used + take] = src[pos : pos + take]
            self.used += take
            pos += take
            if self.used == self.size:
                self._drain(self.size)
        return n

    def _wait_one(self) -> None:
        """Wait for the oldest background write (and raise its error, if any)."""
        pending, buf = self._inflight.popleft()
        try:
            pending.result()
        finally:
            self._free.append(buf)
        if self._fell_back:
            self.direct = False

    def _wait(self) -> None:
        """Wait for every background write (and raise the first error, if any)."""
        while self._inflight:
            self._wait_one()

    def _write_block(self, view: memoryview, offset: int) -> None:
        try:
            _write_all(self.fd, view, offset)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # a file system that takes the flag but not the write: write it plainly
            self._fell_back = True
            _set_direct(self.fd, False)
            _write_all(self.fd, view, offset)

    def _drain(self, length: int) -> None:
        """Write the first `length` (aligned) bytes of the buffer, keep the rest."""
        full, offset = self.view, self.offset
        self.offset += length
        rest = self.used - length
        if not self.background:
            self._write_block(full[:length], offset)
            if self._fell_back:
                self.direct = False
            if rest:
                full[:rest] = full[length : self.used]
            self.used = rest
            return
        while len(self._inflight) >= IN_FLIGHT:
            self._wait_one()
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="direct-write")
        self.view = self._free.pop() if self._free else memoryview(mmap.mmap(-1, self.size))
        if rest:
            self.view[:rest] = full[length : self.used]
        self.used = rest
        pending = self._pool.submit(self._write_block, full[:length], offset)
        self._inflight.append((pending, full))

    def flush(self) -> None:
        """Write everything buffered; afterwards the file is written through the cache."""
        self._wait()
        if self.direct:
            aligned = self.used - self.used % ALIGN
            if aligned:
                self._drain(aligned)
                self._wait()
            self.direct = _set_direct(self.fd, False)
        if self.used:
            _write_all(self.fd, self.view[: self.used], self.offset)
            self.offset += self.used
            self.used = 0
        os.lseek(self.fd, self.offset, os.SEEK_SET)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.used = 0
            while self._inflight:  # an error already raised: let the helpers end
                self._inflight.popleft()[0].exception()
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None
            # the buffers are unmapped when the last view of them goes (the helper
            # may still hold one for a moment): no explicit close that could fail

    def __enter__(self) -> DirectWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_blocks(path: os.PathLike | str, block: int = BUFFER) -> Iterator[bytes]:
    """A whole file in blocks, read with O_DIRECT where the file system allows:
    from the device itself, not from what the page cache remembers of it (a
    read-back check of a stick must see the stick)."""
    size = max(ALIGN, block - block % ALIGN)
    fd = _open_direct(path)
    if fd < 0:
        with open(path, "rb") as fh:
            while piece := fh.read(size):
                yield piece
        return
    buf = mmap.mmap(-1, size)
    view = memoryview(buf)
    try:
        while True:
            try:
                n = os.readv(fd, [view])
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                _set_direct(fd, False)  # takes the flag, not the read: read plainly
                n = os.readv(fd, [view])
            if n == 0:
                break
            yield bytes(view[:n])
            if n % ALIGN:  # the end of the file (the next offset is not aligned)
                _set_direct(fd, False)
    finally:
        view.release()
        buf.close()
        os.close(fd)


class DirectReader:
    """Reads whole small files (attachment chunks) with O_DIRECT into one reused
    aligned buffer, so reading a GiB of chunks does not fill the page cache."""

    def __init__(self, largest: int) -> None:
        self.largest = largest
        self.size = -(-(largest + 1) // ALIGN) * ALIGN  # +1: see the end of the file
        self.buf = mmap.mmap(-1, self.size)
        self.view = memoryview(self.buf)

    def read(self, path: os.PathLike | str) -> bytes | None:
        """The file's bytes, or None when it is larger than `largest`."""
        fd = _open_direct(path)
        got = 0
        if fd >= 0:
            try:
                while got < self.size:
                    n = os.readv(fd, [self.view[got:]])
                    got += n
                    if n == 0 or n % ALIGN:  # a read not ending on a block: end of file
                        break
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                got = -1  # takes the flag but not the read: read it plainly
            finally:
                os.close(fd)
        if fd < 0 or got < 0:
            with open(path, "rb") as fh:
                data = fh.read(self.size)
            return data if len(data) <= self.largest else None
        if got > self.largest:
            return None
        return bytes(self.view[:got])

    def close(self) -> None:
        self.view.release()
        self.buf.close()
