"""Reading the header of an Automerge change chunk without Automerge.

We must know a received change's hash, author, sequence number and
dependencies before it may touch a document: to check its signature, to decide
whether its dependencies are present, and to keep it pending when they are not
(Automerge refuses to load a change whose dependencies are missing). The
layout is Automerge's binary format, "change chunk":

    magic(4) checksum(4) type(1) length(uLEB128) body
    body = deps(uLEB n, n*32 bytes) actor(uLEB len, bytes) seq(uLEB)
           start_op(uLEB) time(sLEB) message(uLEB len, utf-8) ...

The change hash is SHA-256 over `type || length || body`, and the checksum
is its first four bytes. Only uncompressed chunks (type 1) are accepted: we
always send `Change.raw_bytes`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import NamedTuple

from p2p import leb128

MAGIC = b"\x85\x6f\x4a\x83"
CHANGE_CHUNK = 1
MAX_CHANGE = 16 * 1024 * 1024
MAX_DEPS = 4096
MAX_ACTOR = 64


class ChunkError(ValueError):
    """A change chunk that is not well formed."""


class RawChange(NamedTuple):
    """A change's header fields and bytes (a tuple: a large import makes a million of
    them, and a tuple is made 3x faster and held in half the memory of a dataclass)."""

    hash: bytes
    actor: bytes
    seq: int
    deps: tuple[bytes, ...]
    data: bytes  # the whole chunk, as loaded by Automerge


def _uleb(buf: bytes, pos: int, limit: int) -> tuple[int, int]:
    return leb128.uleb(buf, pos, limit, ChunkError)


def parse_one(buf: bytes, pos: int = 0) -> tuple[RawChange, int]:
    """Parse the chunk at `pos`; return it and the offset just after it."""
    if buf[pos : pos + 4] != MAGIC:
        raise ChunkError("not an Automerge chunk")
    if len(buf) < pos + 9:
        raise ChunkError("truncated chunk header")
    checksum = buf[pos + 4 : pos + 8]
    if buf[pos + 8] != CHANGE_CHUNK:
        raise ChunkError("not an uncompressed change chunk")
    length, body = _uleb(buf, pos + 9, len(buf))
    if length > MAX_CHANGE:
        raise ChunkError("change too large")
    end = body + length
    if end > len(buf):
        raise ChunkError("truncated chunk")
    digest = hashlib.sha256(buf[pos + 8 : end]).digest()
    if digest[:4] != checksum:
        raise ChunkError("bad checksum")
    ndeps, p = _uleb(buf, body, end)
    if ndeps > MAX_DEPS or p + 32 * ndeps > end:
        raise ChunkError("bad dependency list")
    deps = tuple(bytes(buf[p + 32 * i : p + 32 * (i + 1)]) for i in range(ndeps))
    p += 32 * ndeps
    alen, p = _uleb(buf, p, end)
    if alen > MAX_ACTOR or p + alen > end:
        raise ChunkError("bad actor")
    actor = bytes(buf[p : p + alen])
    seq, _ = _uleb(buf, p + alen, end)
    return RawChange(digest, actor, seq, deps, bytes(buf[pos:end])), end


def split(buf: bytes) -> Iterator[RawChange]:
    """Parse a concatenation of change chunks."""
    pos = 0
    while pos < len(buf):
        change, pos = parse_one(buf, pos)
        yield change
