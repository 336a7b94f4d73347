"""Numbered parts: one bundle split across files under a size limit (FAT32).

Each part file is a 70-byte header then a slice of the bundle's bytes:

    magic "P2PPART\\n" | version u16 | set id (16 random bytes) | index u16
    | count u16 | payload length u64 | SHA-256 of the payload (32)

Every part of a set carries the same random set id, so a file renamed into a
set it does not belong to, a missing part or a duplicated one is detected
before anything is read as a bundle.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from p2p.errors import NotABundle, P2PError, PartMismatch

MAGIC = b"P2PPART\n"
VERSION = 1
HEADER = struct.Struct(">8sH16sHHQ32s")
MAX_PARTS = 9999


@dataclass(frozen=True)
class PartHeader:
    set_id: bytes
    index: int
    count: int
    length: int
    sha256: bytes

    def pack(self) -> bytes:
        return HEADER.pack(
            MAGIC, VERSION, self.set_id, self.index, self.count, self.length, self.sha256
        )


def is_part(head: bytes) -> bool:
    return head.startswith(MAGIC)


def read_header(path: Path) -> PartHeader:
    with path.open("rb") as fh:
        raw = fh.read(HEADER.size)
    if len(raw) < HEADER.size or not is_part(raw):
        raise PartMismatch(f"{path.name} is not a bundle part, or its header is cut short")
    _magic, version, set_id, index, count, length, digest = HEADER.unpack(raw)
    if version != VERSION:
        raise PartMismatch(f"{path.name} is a part in an unknown format version {version}")
    if not 0 < count <= MAX_PARTS or index >= count:
        raise PartMismatch(f"{path.name} has an impossible part number")
    return PartHeader(set_id, index, count, length, digest)


def part_name(base: str, index: int) -> str:
    return f"{base}.{index + 1:03d}"


class JoinedParts:
    """A read-only stream over the payloads of a checked part set."""

    def __init__(self, files: list[Path]) -> None:
        self._files = files
        self._i = 0
        self._fh: BinaryIO | None = None

    def read(self, n: int = -1) -> bytes:
        out = b""
        while n < 0 or len(out) < n:
            if self._fh is None:
                if self._i >= len(self._files):
                    break
                self._fh = self._files[self._i].open("rb")
                self._fh.seek(HEADER.size)
                self._i += 1
            chunk = self._fh.read(-1 if n < 0 else n - len(out))
            if not chunk:
                self._fh.close()
                self._fh = None
                continue
            out += chunk
        return out

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> JoinedParts:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_parts(paths: list[Path]) -> JoinedParts:
    """Check a part set completely, then return its payloads as one stream."""
    headers = [(read_header(p), p) for p in paths]
    set_ids = {h.set_id for h, _ in headers}
    if len(set_ids) != 1:
        raise PartMismatch("these files are parts of different bundles")
    count = headers[0][0].count
    by_index: dict[int, Path] = {}
    for h, p in headers:
        if h.count != count:
            raise PartMismatch(f"{p.name} disagrees with the other parts about their number")
        if h.index in by_index:
            raise PartMismatch(f"{p.name} and {by_index[h.index].name} claim the same part number")
        by_index[h.index] = p
    missing = [i + 1 for i in range(count) if i not in by_index]
    if missing:
        raise PartMismatch(f"part {missing[0]} of {count} of this bundle is missing")
    ordered = [by_index[i] for i in range(count)]
    for h, p in headers:
        digest = hashlib.sha256()
        size = 0
        with p.open("rb") as fh:
            fh.seek(HEADER.size)
            while block := fh.read(1 << 20):
                digest.update(block)
                size += len(block)
        if size != h.length or digest.digest() != h.sha256:
            raise PartMismatch(f"{p.name} is damaged or cut short")
    return JoinedParts(ordered)


# A file's part set; here, not in `source`, so that naming a bundle's files
# (`export --since`) does not import the reader and its decryption pipeline.
HEAD = 64  # bytes read to tell what a file is (part, age envelope, container)


def file_head(path: Path) -> bytes:
    """The first bytes of a file given as a bundle (enough to tell what it is)."""
    if path.is_dir():
        raise NotABundle(f"{path} is a directory, not a bundle file")
    if not path.exists():
        raise NotABundle(f"{path} does not exist")
    with path.open("rb") as fh:
        return fh.read(HEAD)


def part_set(path: Path) -> list[Path]:
    """All parts in `path`'s folder that belong with it (by the set id they carry)."""
    mine = read_header(path)
    found = []
    for other in sorted(path.parent.iterdir()):
        if other.is_file() and is_part(file_head(other)):
            try:
                if read_header(other).set_id == mine.set_id:
                    found.append(other)
            except P2PError:
                continue
    return found


def bundle_paths(path: Path) -> list[Path]:
    """The files of the bundle `path` names: itself, or its whole part set."""
    return part_set(path) if path.is_file() and is_part(file_head(path)) else [path]
