"""The fast paths of the bundle writer produce exactly the bytes of the plain ones:
records packed without copying their chunk, the SHA-256 fed on a helper thread,
and files written past the page cache (p2p/direct.py)."""

from __future__ import annotations

import errno
import hashlib
import io
import os
from pathlib import Path

import blake3
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p.background_hash import BackgroundHash
from p2p.bundle import container
from p2p.direct import ALIGN, DirectReader, DirectWriter
from p2p.gather import GATHER
from p2p.identity import Identity


@settings(max_examples=60, deadline=None)
@given(
    n=st.sampled_from([0, 1, container.BIG - 1, container.BIG, 65535, 65536, 70000, 1 << 20]),
    index=st.integers(0, 1 << 40),
    extra=st.booleans(),
)
def test_pack_record_is_msgpack_byte_for_byte(n: int, index: int, extra: bool) -> None:
    data = os.urandom(n)
    record = {"t": "blob-chunk", "id": b"\x01" * 32, "n": index, "data": data}
    if extra:  # `data` not last: packed the ordinary way
        record["z"] = 1
    head, tail = container.pack_record(record)
    assert head + tail == msgpack.packb(record, use_bin_type=True)
    assert (len(tail) > 0 and tail is data) == (n >= container.BIG and not extra)


@pytest.mark.parametrize("version", [1, 2])
def test_written_bundle_is_the_same_as_the_plain_writer(tmp_path: Path, version: int) -> None:
    """A bundle with small and large records, written through the fast paths,
    equals one packed and hashed the plain way, and reads back."""
    me = Identity.generate()
    records = [{"t": "x", "k": i} for i in range(3000)]  # many small: gathered
    records += [
        {"t": "blob-chunk", "id": b"\x02" * 32, "n": i, "data": os.urandom(300_000 + i)}
        for i in range(5)
    ]
    out = io.BytesIO()
    stats = container.write_bundle(out, me, records, created=1, version=version)
    body = bytearray(container.MAGIC)
    header = msgpack.packb({"exporter": me.public_key, "created": 1}, use_bin_type=True)
    body += version.to_bytes(2, "big") + len(header).to_bytes(4, "big") + header
    for r in records:
        packed = msgpack.packb(r, use_bin_type=True)
        body += len(packed).to_bytes(4, "big") + packed
    body += bytes(4)
    assert out.getvalue()[: len(body)] == bytes(body)
    algorithm = hashlib.sha256 if version == 1 else lambda b: blake3.blake3(b)
    assert stats.digest == algorithm(bytes(body)).digest()
    assert stats.name == blake3.blake3(out.getvalue()).digest()  # the file's name
    if version == 1:  # and the name earlier versions gave it
        assert stats.legacy == hashlib.sha256(out.getvalue()).digest()
    out.seek(0)
    _h, got = container.read_all(out)
    assert got == records


def test_background_hash_equals_hashlib() -> None:
    pieces = [os.urandom(n) for n in (0, 1, GATHER - 1, GATHER, 3, GATHER * 3 + 7, 10)] * 3
    h = BackgroundHash("sha256", depth=2)
    for p in pieces:
        h.update(p)
    h.update(bytearray(b"tail"))
    assert h.done().hexdigest() == hashlib.sha256(b"".join(pieces) + b"tail").hexdigest()
    small = BackgroundHash()
    small.update(b"abc")
    assert small.done().digest() == hashlib.sha256(b"abc").digest()
    stopped = BackgroundHash(depth=1)
    for p in pieces:
        stopped.update(p)
    stopped.close()  # after an error: returns, the thread ends


@pytest.mark.parametrize("background", [False, True])
@pytest.mark.parametrize("where", ["disk", "shm"])
@pytest.mark.parametrize(
    "sizes", [[1], [ALIGN], [ALIGN + 1], [5 << 20, 7, 3 << 20, ALIGN - 1], [1 << 20] * 9 + [16]]
)
def test_direct_writer_and_reader_round_trip(
    tmp_path: Path, where: str, sizes: list[int], background: bool
) -> None:
    """Same bytes through O_DIRECT (disk) and through its fallback (tmpfs refuses
    O_DIRECT), whatever the sizes: aligned blocks direct, the tail through the cache."""
    base = tmp_path if where == "disk" else Path("/dev/shm")
    if not base.is_dir():
        pytest.skip("no /dev/shm here")
    path = base / f"direct-{os.getpid()}-{len(sizes)}.bin"
    data = os.urandom(sum(sizes))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with DirectWriter(fd, buffer=1 << 20, background=background) as w:
                pos = 0
                for n in sizes:
                    assert w.write(data[pos : pos + n]) == n
                    pos += n
            os.fsync(fd)
        finally:
            os.close(fd)
        assert path.read_bytes() == data
        assert DirectReader(len(data)).read(path) == data
        assert DirectReader(len(data) - 1).read(path) is None  # larger than allowed
    finally:
        path.unlink(missing_ok=True)


@pytest.mark.parametrize("background", [False, True])
def test_direct_writer_raises_a_failed_write(background: bool) -> None:
    """A device that fails (here /dev/full: ENOSPC) fails the write, also when the
    helper thread did it: the error reaches the caller, never a silent short file."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        w = DirectWriter(fd, buffer=1 << 20, background=background)
        with pytest.raises(OSError) as got:
            for _ in range(4):
                w.write(b"x" * (1 << 20))
            w.close()
        assert got.value.errno == errno.ENOSPC
        w.close()  # closing again after the error is harmless
    finally:
        os.close(fd)
