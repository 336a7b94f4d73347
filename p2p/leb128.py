"""LEB128 integers, as Automerge's binary format writes them.

One reader for both places that parse Automerge bytes before the binding sees
them (`chunk` for change headers, `amformat` for pricing); each passes the
error it raises, so callers keep their own vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence


def uleb(buf: Sequence[int], pos: int, end: int, error: type[Exception]) -> tuple[int, int]:
    """An unsigned integer at `pos`, read no further than `end`; and the offset after it."""
    value = shift = 0
    while True:
        if pos >= end:
            raise error("truncated integer")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise error("integer too long")


def sleb(buf: Sequence[int], pos: int, end: int, error: type[Exception]) -> tuple[int, int]:
    """A signed (two's complement) integer at `pos`; and the offset after it."""
    value = shift = 0
    while True:
        if pos >= end:
            raise error("truncated integer")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte & 0x40:
                value -= 1 << shift
            return value, pos
        if shift > 63:
            raise error("integer too long")
