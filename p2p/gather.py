"""Small writes gathered into large hand-overs between threads.

Why: the helper threads that hash or encrypt a bundle take its bytes through a
bounded queue; a bundle of a million small records would otherwise pay one
queue hand-over per record. Pieces under GATHER bytes are appended to one
buffer, which is handed over (without a copy) once it is large; a large piece
goes as it is, after whatever was gathered before it, so the order is kept.
"""

from __future__ import annotations

from collections.abc import Callable

GATHER = 256 * 1024  # pieces smaller than this are gathered before the hand-over


class Gather:
    """Feeds `put` in order; callers must not change a bytes-like after `add`
    (bytes are immutable; anything else that is large is copied)."""

    def __init__(self, put: Callable[[bytes | bytearray], None]) -> None:
        self._put = put
        self._small = bytearray()

    def add(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) < GATHER:
            self._small += data
            if len(self._small) >= GATHER:
                self._put(self.take())
            return
        self.flush()
        self._put(data if isinstance(data, bytes) else bytes(data))

    def flush(self) -> None:
        """Hand over what was gathered so far."""
        if self._small:
            self._put(self.take())

    def take(self) -> bytearray:
        """What was gathered, as it is: its new owner holds that buffer from now
        on, and gathering starts a new one."""
        small, self._small = self._small, bytearray()
        return small
