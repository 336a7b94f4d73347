"""The bundle container: header, length-delimited msgpack records, signed trailer.

    magic "P2PBNDL\\n" | version u16 | header length u32 | header (msgpack map)
    { record length u32 (1..MAX_RECORD) | record (msgpack map with "t") } ...
    end marker u32 = 0
    trailer: record count u64 | digest of every byte before the trailer (32)
             | Ed25519 signature (64) over TAGS[version] || that digest || count u64

The digest is SHA-256 in version 1 and BLAKE3-256 in version 2 (four to five
times faster here: it is the critical path of reading a large bundle); both are
read, version 2 is written unless a recipient needs 1. All integers big-endian.
Written and read as a stream in constant memory; every length is checked
against its limit before anything is allocated, and the trailer proves the
bundle is complete and unaltered (docs/bundle-format.md).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import blake3
import msgpack

from p2p.background_hash import BackgroundHash
from p2p.blobs.staged import Staged
from p2p.errors import (
    BadBundleSignature,
    BundleCorrupt,
    BundleTooLarge,
    BundleTruncated,
    NotABundle,
    UnsupportedVersion,
)
from p2p.identity import Identity, verify

MAGIC = b"P2PBNDL\n"
VERSION = 2  # what writers write by default
# per version: the trailer digest's algorithm and the signed message's domain tag
# (the tag names the version, so a signature of one version never verifies as
# the other's, whatever the digests)
ALGORITHMS = {1: "sha256", 2: "blake3"}
TAGS = {1: b"p2p/bundle/v1\x00", 2: b"p2p/bundle/v2\x00"}
VERSIONS = tuple(sorted(ALGORITHMS))
MAX_HEADER = 64 * 1024
MAX_RECORD = 64 * 1024 * 1024
TRAILER = 8 + 32 + 64
# A `blob-chunk` record as p2p writes it starts with these bytes (msgpack of a
# 4-entry map whose first key is "t" = "blob-chunk", its "data" last): the
# proving pass may stage such a record's chunk (see BundleReader.prove).
CHUNK_PREFIX = b"\x84\xa1t\xaablob-chunk"
HOLD = 32 * 1024 * 1024  # record bytes (chunks aside) the proving pass keeps for a replay


# stage(record with "data" a memoryview into the record's bytes, BLAKE3 of that
# data) -> Staged, or None to treat the record as
# any other one (decoded again once the trailer has verified)
Stage = Callable[[dict, bytes], "Staged | None"]


@dataclass(frozen=True)
class BundleHeader:
    version: int
    exporter: bytes
    created: int
    extra: dict = field(default_factory=dict)


@dataclass
class BundleStats:
    count: int = 0
    size: int = 0
    digest: bytes = b""  # the trailer's: of every byte before the trailer
    # BLAKE3 of every byte of the container, trailer included (the name of a plain
    # bundle file: docs/bundle-format.md §5); b"" when not asked for (version 1)
    name: bytes = b""
    # version 1 only: SHA-256 of every byte, trailer included (the name earlier
    # versions of p2p gave a plain file; free, from the trailer's own hash)
    legacy: bytes = b""
    version: int = VERSION
    chain: bytes = b""  # BLAKE3 over the framing and each record's BLAKE3 (see BundleReader)
    # what `prove(stage=...)` set aside: record index -> the stand-in stage() returned
    staged: dict[int, dict] = field(default_factory=dict)
    # every record, in order, when the rest fit in HOLD: bytes, or a staged stand-in
    held: list[bytes | dict] | None = None


def _unpack(data: bytes, limit: int) -> object:
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            max_bin_len=limit,
            max_str_len=limit,
            max_array_len=min(limit, 10_000_000),
            max_map_len=min(limit, 10_000_000),
            max_ext_len=0,
        )
    except (ValueError, TypeError, RecursionError, msgpack.ExtraData) as exc:
        raise BundleCorrupt(f"a record of this bundle is not valid msgpack ({exc})") from exc
    except Exception as exc:  # msgpack raises several types for hostile input
        raise BundleCorrupt("a record of this bundle is not valid msgpack") from exc


_DATA_KEY = b"\xa4data"
_BIN = {0xC4: 1, 0xC5: 2, 0xC6: 4}  # msgpack bin 8/16/32: bytes of the length that follows


def _split_chunk(body: bytes) -> tuple[dict, memoryview] | None:
    """A chunk record's fields, with "data" a view of its bytes (not a copy),
    when its last entry is "data"; else a full decoding. None if it is not a
    map with bytes under "data" (the record is then decoded later, as any other).

    The entries before "data" are decoded by msgpack with "data" set to nil; the
    bin header after the key must cover the body exactly to its end, so the
    split reads the same map a full decoding would."""
    at = body.find(_DATA_KEY, len(CHUNK_PREFIX), 256)
    while at >= 0:
        width = _BIN.get(body[at + 5]) if at + 5 < len(body) else None
        if width is not None:
            start = at + 6 + width
            size = int.from_bytes(body[at + 6 : start], "big")
            if start + size == len(body):
                try:
                    head = msgpack.unpackb(
                        body[:at] + _DATA_KEY + b"\xc0",
                        raw=False,
                        strict_map_key=False,
                        max_bin_len=256,
                        max_str_len=256,
                        max_array_len=16,
                        max_map_len=16,
                        max_ext_len=0,
                    )
                except Exception:  # noqa: BLE001 - not this split: try the next one
                    head = None
                if isinstance(head, dict) and "data" in head and head["data"] is None:
                    head.pop("data")
                    return head, memoryview(body)[start:]
        at = body.find(_DATA_KEY, at + 1, 256)
    try:
        record = _unpack(body, len(body))
    except BundleCorrupt:
        return None
    if not isinstance(record, dict):
        return None
    data = record.pop("data", None)
    if not isinstance(data, bytes) or not body.endswith(data):
        return None  # its key for the chain would not be its bytes before the data
    return record, memoryview(body)[len(body) - len(data) :]


def _record(body: dict | bytes, limit: int, number: int) -> dict:
    """A record from its bytes (or the stand-in a stage() returned for a staged chunk)."""
    if isinstance(body, dict):
        return dict(body)
    record = _unpack(body, limit)
    if not isinstance(record, dict) or not isinstance(record.get("t"), str):
        raise BundleCorrupt(f"record {number} of this bundle has no type")
    return record


class _Hashes:
    """The digests of one reading or writing, each fed on a helper thread: the
    trailer's (the version's algorithm) and, for version 1 when asked, a BLAKE3 of
    every byte (the file's name; in version 2 that is the trailer's hash, copied)."""

    def __init__(self, version: int, name: bool) -> None:
        self.version = version
        self.trailer = BackgroundHash(ALGORITHMS[version])
        self.name = BackgroundHash("blake3") if name and version != 2 else None

    def update(self, data: bytes) -> None:
        self.trailer.update(data)
        if self.name is not None:
            self.name.update(data)

    def finish(self, trailer: bytes, stats: BundleStats) -> None:
        """Fill `stats` (digest, name, legacy) once every byte before `trailer` was fed."""
        hashed = self.trailer.done()
        stats.digest = hashed.digest()
        whole = hashed.copy()
        whole.update(trailer)
        if self.version == 2:
            stats.name = whole.digest()
        else:
            stats.legacy = whole.digest()
            if self.name is not None:
                named = self.name.done()
                named.update(trailer)
                stats.name = named.digest()
        stats.version = self.version

    def digest(self) -> bytes:
        return bytes(self.trailer.done().digest())

    def close(self) -> None:
        self.trailer.close()
        if self.name is not None:
            self.name.close()


class _HashingWriter:
    """Writes through to `out` and feeds the hashes (`_Hashes`) on helper threads:
    the trailer digest and, from the same hash, the file's own: one pass."""

    def __init__(self, out: BinaryIO, version: int, name: bool) -> None:
        self.out = out
        self.hash = _Hashes(version, name)
        self.size = 0

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.hash.update(data)
        self.size += len(data)


BIG = 64 * 1024  # a record's trailing `data` this large is written without copying it


def pack_record(record: dict) -> tuple[bytes, bytes]:
    """The record's msgpack bytes as (head, data): head + data is exactly
    `msgpack.packb(record, use_bin_type=True)`, but a large bytes value under the
    last key `data` (an attachment chunk) is not copied into the packed buffer."""
    data = record.get("data")
    if not isinstance(data, bytes) or len(data) < BIG or next(reversed(record)) != "data":
        return msgpack.packb(record, use_bin_type=True), b""
    head = msgpack.packb({**record, "data": b""}, use_bin_type=True)
    assert head.endswith(b"\xc4\x00")  # bin 8 of length 0: the empty `data` at the end
    n = len(data)
    size = struct.pack(">BH", 0xC5, n) if n < 1 << 16 else struct.pack(">BI", 0xC6, n)
    return head[:-2] + size, data


def write_bundle(
    out: BinaryIO,
    exporter: Identity,
    records: Iterable[dict],
    created: int | None = None,
    *,
    signer: Identity | None = None,
    version: int = VERSION,
    name: bool = True,
) -> BundleStats:
    """Stream `records` into `out` as a signed bundle of format `version` (1 only
    for recipients whose p2p predates 2). `name`: also give `stats.name` (BLAKE3
    of every byte written; free in version 2, one more hash in version 1).
    `signer` exists for test vectors only (a trailer signed by another key)."""
    if version not in ALGORITHMS:
        raise ValueError(f"bundle format version {version} does not exist (1 or 2)")
    w = _HashingWriter(out, version, name)
    stats = BundleStats()
    try:
        header = msgpack.packb(
            {"exporter": exporter.public_key, "created": int(created or time.time())},
            use_bin_type=True,
        )
        w.write(MAGIC + struct.pack(">HI", version, len(header)) + header)
        count = 0
        for record in records:
            if not isinstance(record.get("t"), str):
                raise ValueError("every record needs a string 't'")
            head, data = pack_record(record)
            if len(head) + len(data) > MAX_RECORD:
                raise ValueError("record larger than MAX_RECORD")
            length = struct.pack(">I", len(head) + len(data))
            if len(head) < BIG:
                w.write(length + head)
            else:  # a large document: no copy of it just to prefix 4 bytes
                w.write(length)
                w.write(head)
            if data:
                w.write(data)
            count += 1
        w.write(struct.pack(">I", 0))
        digest = w.hash.digest()
        sig = (signer or exporter).sign(TAGS[version] + digest + struct.pack(">Q", count))
        trailer = struct.pack(">Q", count) + digest + sig
        w.hash.finish(trailer, stats)  # the file's own digests, without reading it again
    finally:
        w.hash.close()
    out.write(trailer)
    stats.count, stats.size = count, w.size + TRAILER
    return stats


class BundleReader:
    """Reads a bundle from a stream; trust the records only once `records()` ends."""

    def __init__(
        self,
        stream: BinaryIO,
        max_record: int = MAX_RECORD,
        *,
        proven: BundleStats | None = None,
        progress: Callable[[int], None] | None = None,
        name: bool = False,
    ) -> None:
        """`proven`: the stats of an earlier, complete reading of the same bundle
        (`prove()`). This reading is then bound to that one by `chain` (a BLAKE3
        over the header, every length, each record's BLAKE3, already computed for
        the duplicate check, and the trailer) instead of a second hash of every
        byte: any byte that differs from the proven reading fails at the end.
        `progress(bytes read)` after each record."""
        self.stream = stream
        self.max_record = max_record
        self.proven = proven
        self.progress = progress
        self.name = name
        self.hash: _Hashes | None = None
        self.chain = blake3.blake3()
        self.offset = 0
        self.stats = BundleStats()
        self.header = self._read_header()

    def _exact(self, n: int, what: str) -> bytes:
        data = self.stream.read(n)
        while data is not None and 0 < len(data) < n:
            more = self.stream.read(n - len(data))
            if not more:
                break
            data += more
        if data is None or len(data) < n:
            got = len(data or b"")
            raise BundleTruncated(
                f"this bundle is cut short at byte {self.offset + got} (in {what}); "
                "it was probably copied incompletely. Nothing was imported"
            )
        self.offset += n
        return data

    def _hashed(self, n: int, what: str, body: bool = False) -> bytes:
        data = self._exact(n, what)
        self._feed(data, body)
        return data

    def _feed(self, data: bytes, body: bool = False) -> None:
        if self.hash is not None:
            self.hash.update(data)
        if not body:  # a record body enters the chain by its BLAKE3 (in _bodies)
            self.chain.update(data)

    def _read_header(self) -> BundleHeader:
        first = self.stream.read(len(MAGIC))
        if not first:
            raise NotABundle("this file is empty, not a bundle")
        if not MAGIC.startswith(first[: len(MAGIC)]) or len(first) < len(MAGIC):
            if MAGIC.startswith(first):
                raise BundleTruncated("this bundle is cut short inside its header")
            if b"p2p-invite" in first + self.stream.read(24):
                raise NotABundle(
                    "this is a community invite, not a bundle: use 'p2p community join FILE'"
                )
            raise NotABundle("this file is not a p2p bundle (unknown format)")
        self.offset = len(MAGIC)
        fixed = self._exact(6, "the header")
        version, hlen = struct.unpack(">HI", fixed)
        if version not in ALGORITHMS:
            raise UnsupportedVersion(
                f"this bundle uses format version {version}; this p2p reads versions "
                f"{' and '.join(map(str, VERSIONS))}. Please upgrade p2p"
            )
        if self.proven is None:  # hashed on the other core while this one stages
            self.hash = _Hashes(version, self.name)
        self._feed(first + fixed)
        if hlen > MAX_HEADER:
            raise BundleTooLarge(f"this bundle declares a {hlen}-byte header; refusing it")
        obj = _unpack(self._hashed(hlen, "the header"), MAX_HEADER)
        if not isinstance(obj, dict):
            raise BundleCorrupt("this bundle's header is damaged")
        exporter, created = obj.get("exporter"), obj.get("created")
        if not isinstance(exporter, bytes) or len(exporter) != 32 or not isinstance(created, int):
            raise BundleCorrupt("this bundle's header is damaged (no exporter key)")
        extra = {k: v for k, v in obj.items() if k not in ("exporter", "created")}
        return BundleHeader(version, exporter, created, extra)

    def records(self) -> Iterator[dict]:
        """Every record, decoded; a record staged by the proven reading comes as
        the stand-in its stage() returned (no "data")."""
        try:
            for body in self._bodies():
                yield _record(body, self.max_record, self.stats.count)
            self._trailer()
        finally:
            self.close()

    def prove(self, stage: Stage | None = None) -> BundleStats:
        """Read the whole container and check its trailer without decoding a single
        record (no msgpack, no Automerge): what fails here was never parsed.

        The one exception is `stage`: a record that starts with CHUNK_PREFIX (an
        attachment chunk as p2p writes it) is decoded with msgpack only, and its
        chunk handed to `stage` with its BLAKE3, so that it need not be read again;
        what `stage` does with it must stay invisible unless this returns. The other
        records are kept in memory while they fit in HOLD (`stats.held`), so the
        caller can replay them without a second reading (or decryption)."""
        held: list[bytes | dict] | None = []
        size = 0
        try:
            for body in self._bodies(stage):
                if held is None:
                    continue
                if isinstance(body, dict):
                    held.append(body)
                    continue
                size += len(body)
                held.append(body)
                if size > HOLD:
                    held = None  # the caller reads the bundle again instead
            self._trailer()
        finally:
            self.close()
        self.stats.held = held
        return self.stats

    def close(self) -> None:
        if self.hash is not None:
            self.hash.close()

    def _stage(self, body: bytes, stage: Stage) -> dict | None:
        """The stand-in for a chunk record (see prove), or None to keep it as is."""
        split = _split_chunk(body)
        if split is None:
            return None
        record, data = split
        digest = blake3.blake3(data).digest()
        staged = stage({**record, "data": data}, digest)
        if staged is None:
            return None
        if staged.size != len(data) or staged.hash != digest:
            raise ValueError("stage() must describe the chunk it was given")
        return {
            "t": record.get("t"),
            "id": record.get("id"),
            "n": record.get("n"),
            "staged": staged,
        }

    def _key(self, body: bytes, staged: dict | None, digest: bytes | None = None) -> bytes:
        """The record's hash for the duplicate check and `chain`: BLAKE3 of its
        bytes, or for a staged chunk record BLAKE3 of the bytes before its data
        followed by the data's own BLAKE3 (computed once, for the manifest too)."""
        if staged is None:
            return blake3.blake3(body).digest()
        size = staged["staged"].size
        if digest is None:
            digest = blake3.blake3(memoryview(body)[len(body) - size :]).digest()
        return blake3.blake3(memoryview(body)[: len(body) - size]).digest() + digest

    def _bodies(self, stage: Stage | None = None) -> Iterator[bytes | dict]:
        seen: set[bytes] = set()
        count = 0
        staged_before = self.proven.staged if self.proven is not None else {}
        while True:
            (length,) = struct.unpack(">I", self._hashed(4, f"the length of record {count + 1}"))
            if length == 0:
                break
            if length > self.max_record:
                raise BundleTooLarge(
                    f"record {count + 1} of this bundle claims {length} bytes, over the "
                    f"{self.max_record}-byte limit; refusing to read it"
                )
            body = self._hashed(length, f"record {count + 1}", body=True)
            staged = staged_before.get(count)
            digest = None
            if stage is not None and body.startswith(CHUNK_PREFIX):
                staged = self._stage(body, stage)
                if staged is not None:
                    digest = staged["staged"].hash
                    self.stats.staged[count] = staged
            key = self._key(body, staged, digest)  # local duplicate check: the fast hash
            self.chain.update(key)
            if key in seen:
                raise BundleCorrupt(f"record {count + 1} of this bundle is a duplicate")
            seen.add(key)
            count += 1
            self.stats.count = count
            if self.progress is not None:
                self.progress(self.offset)
            yield staged if staged is not None else body

    def _trailer(self) -> None:
        count = self.stats.count
        if self.hash is None:
            self._same_as_proven()
            return
        digest = self.hash.digest()
        trailer = self._exact(TRAILER, "the trailer")
        (claimed,) = struct.unpack(">Q", trailer[:8])
        if trailer[8:40] != digest or claimed != count:
            raise BundleCorrupt(
                "this bundle's contents do not match its trailer: it was altered or damaged"
            )
        tag = TAGS[self.header.version]
        if not verify(self.header.exporter, trailer[40:], tag + digest + trailer[:8]):
            raise BadBundleSignature()
        if self.stream.read(1):
            raise BundleCorrupt("this bundle has unexpected data after its end")
        self.chain.update(trailer)
        staged = self.stats.staged
        self.stats = BundleStats(count, self.offset, chain=self.chain.digest())
        self.hash.finish(trailer, self.stats)  # every byte of the stream, trailer included
        self.stats.staged = staged

    def _same_as_proven(self) -> None:
        """End of a reading after `prove()`: the same bytes as the proven one."""
        proven = self.proven
        assert proven is not None
        trailer = self._exact(TRAILER, "the trailer")
        self.chain.update(trailer)
        if self.stream.read(1):
            raise BundleCorrupt("this bundle has unexpected data after its end")
        if self.chain.digest() != proven.chain or self.stats.count != proven.count:
            raise BundleCorrupt(
                "this bundle changed while it was being read (it is not the one whose "
                "signature was checked); nothing was imported"
            )
        self.stats = BundleStats(
            proven.count,
            self.offset,
            proven.digest,
            proven.name,
            proven.legacy,
            proven.version,
            proven.chain,
        )


class HeldReader:
    """The records a proving pass held (`BundleStats.held`), replayed from memory:
    the same face as a second BundleReader, without reading (or decrypting) again."""

    def __init__(
        self, header: BundleHeader, stats: BundleStats, max_record: int = MAX_RECORD
    ) -> None:
        self.header = header
        self.stats = stats
        self.offset = stats.size
        self.max_record = max_record

    def records(self) -> Iterator[dict]:
        held = self.stats.held or []
        for i, body in enumerate(held):
            record = _record(body, self.max_record, i + 1)
            if not isinstance(body, dict):
                held[i] = b""  # the bytes go as they are used
            yield record


def read_all(stream: BinaryIO, max_record: int = MAX_RECORD) -> tuple[BundleHeader, list[dict]]:
    reader = BundleReader(stream, max_record)
    return reader.header, list(reader.records())
