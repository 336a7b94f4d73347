"""A hash computed on a helper thread while the caller goes on writing.

Why: writing a bundle hashes every byte with SHA-256 (the trailer's digest, and
the file's own digest), about 1 s per GiB on one core, while the writing thread
is busy reading chunks, packing records and writing. hashlib releases the GIL
while it hashes a large buffer, so a second thread runs it on the other core.

Bytes are handed over in order through a bounded queue (at most `depth`
pieces in flight, so memory stays flat), small pieces gathered first
(p2p/gather.py). Callers must not change a buffer after `update`.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import Any

import blake3

from p2p.gather import Gather


class BackgroundHash:
    """`hashlib.new(name)` (or BLAKE3 for "blake3") fed on a helper thread;
    `done()` returns the hash object."""

    def __init__(self, name: str = "sha256", depth: int = 8) -> None:
        self._hash: Any = blake3.blake3() if name == "blake3" else hashlib.new(name)
        self._gather = Gather(self._hand_over)
        self._queue: queue.Queue[bytes | bytearray | None] = queue.Queue(maxsize=depth)
        self._thread: threading.Thread | None = None
        self._finished = False

    def _run(self) -> None:
        while (piece := self._queue.get()) is not None:
            self._hash.update(piece)

    def _hand_over(self, piece: bytes | bytearray) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hash", daemon=True)
            self._thread.start()
        self._queue.put(piece)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        assert not self._finished, "update after done()"
        self._gather.add(data)

    def done(self) -> Any:
        """Wait for every byte to be hashed; the hashlib object (copy() it to go on)."""
        if not self._finished:
            self._finished = True
            if self._thread is None:  # everything was small: no thread was needed
                self._hash.update(self._gather.take())
            else:
                self._gather.flush()
                self._queue.put(None)
                self._thread.join()
        return self._hash

    def close(self) -> None:
        """Stop the helper thread (after an error: the hash is then not needed)."""
        if not self._finished and self._thread is not None:
            self._finished = True
            while True:  # make room for the stop mark, whatever was queued
                try:
                    self._queue.put_nowait(None)
                    break
                except queue.Full:
                    try:
                        self._queue.get_nowait()
                    except queue.Empty:
                        pass
            self._thread.join()
