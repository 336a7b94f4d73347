"""Checking the attachment records of a bundle without any store or key.

A carrier (a relay, a stick's owner, `p2p verify`) hashes each chunk and
compares it with the manifest carried before it: sealed chunks are hashed as
ciphertext, so no key is needed. Memory is bounded: at most MAX_HASHES chunk
hashes are held; chunks beyond that are counted as unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from p2p.blobs import manifest as mf
from p2p.blobs.staged import Staged
from p2p.errors import BadAttachment

MAX_HASHES = 1_000_000  # 32 MiB of hashes: manifests for a terabyte of chunks


@dataclass
class BlobCheck:
    attachments: int = 0
    chunks: int = 0
    size: int = 0
    unchecked: int = 0
    faults: list[str] = field(default_factory=list)
    _manifests: dict[bytes, mf.Manifest] = field(default_factory=dict)
    _held: int = 0

    def take(self, record: dict, where: str) -> None:
        kind = record.get("t")
        aid, data = record.get("id"), record.get("data")
        if kind not in ("blob-manifest", "blob-chunk"):
            return
        staged = record.get("staged")
        if kind == "blob-chunk" and isinstance(staged, Staged):  # hashed as it was proven
            self._chunk(aid, record.get("n"), staged.size, staged.hash, where=where)
            return
        if not isinstance(aid, bytes) or not isinstance(data, bytes):
            self.faults.append(f"{where}: malformed {kind} record")
            return
        if kind == "blob-manifest":
            try:
                parsed = mf.parse(data)
            except BadAttachment as exc:
                self.faults.append(f"{where}: {exc}")
                return
            if mf.digest(data) != aid:
                self.faults.append(f"{where}: an attachment manifest does not match its id")
                return
            self.attachments += 1
            if self._held + len(parsed.hashes) <= MAX_HASHES:
                self._manifests[aid] = parsed
                self._held += len(parsed.hashes)
            return
        self._chunk(aid, record.get("n"), len(data), None, data, where)

    def _chunk(
        self,
        aid: object,
        n: object,
        size: int,
        digest: bytes | None,
        data: bytes = b"",
        where: str = "",
    ) -> None:
        m = self._manifests.get(aid) if isinstance(aid, bytes) else None
        if m is None or type(n) is not int:
            self.unchecked += 1
            return
        if not 0 <= n < len(m.hashes) or size != m.chunk_len(n):
            self.faults.append(f"{where}: chunk {n} of {m.name!r} has the wrong size")
        elif (digest if digest is not None else mf.digest(data)) != m.hashes[n]:
            self.faults.append(f"{where}: chunk {n} of {m.name!r} does not match its hash")
        else:
            self.chunks += 1
            self.size += size

    def as_json(self) -> dict:
        return {
            "attachments": self.attachments,
            "chunks_checked": self.chunks,
            "bytes_checked": self.size,
            "chunks_unchecked": self.unchecked,
        }


def hash_only(record: dict, digest: bytes) -> Staged | None:
    """A `stage` that keeps nothing but the chunk's size and hash (for `verify`):
    the chunk is checked against its manifest without a second hashing."""
    aid, n, data = record.get("id"), record.get("n"), record.get("data")
    if not isinstance(aid, bytes) or type(n) is not int or not isinstance(data, memoryview):
        return None
    return Staged(len(data), digest)
