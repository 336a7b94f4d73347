"""Small writes gathered into large hand-overs between threads, and hand-overs
read back like a file (`Pieces`).

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


class Pieces:
    """The other way: buffers that `more()` gives one at a time (None at the end)
    read like a file, `read(n)` giving n bytes, fewer only at the end. `take(n)`
    gives a view instead, with no copy when the n bytes lie in one buffer (the
    caller must be done with it before the next call)."""

    def __init__(
        self, more: Callable[[], bytes | bytearray | memoryview | None], first: bytes = b""
    ) -> None:
        self._more = more
        self._cur = memoryview(first)
        self._end = False

    def _fill(self) -> bool:
        """Whether there is a byte to read (asking `more` for it if need be)."""
        while not self._cur:
            if self._end:
                return False
            got = self._more()
            if got is None:
                self._end = True
                return False
            self._cur = memoryview(got)
        return True

    def _parts(self, n: int | None) -> list[memoryview]:
        want = n if n is not None and n >= 0 else 1 << 62
        parts = []
        while want > 0 and self._fill():
            piece = self._cur[:want]
            self._cur = self._cur[len(piece) :]
            parts.append(piece)
            want -= len(piece)
        return parts

    def read(self, n: int | None = -1) -> bytes:
        parts = self._parts(n)
        return parts[0].tobytes() if len(parts) == 1 else b"".join(parts)

    def take(self, n: int) -> memoryview:
        parts = self._parts(n)
        return parts[0] if len(parts) == 1 else memoryview(b"".join(parts))

    def ended(self) -> bool:
        """Whether every byte was read."""
        return not self._fill()
