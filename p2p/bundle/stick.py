"""Writing to removable media so that a pulled stick or a full card loses nothing.

Free space is checked first; every file is written under a temporary name,
flushed and fsynced, renamed into place, the folder fsynced, then read back
and compared; on any failure everything this call wrote is removed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from p2p.background_hash import BackgroundHash
from p2p.bundle import parts
from p2p.direct import read_blocks
from p2p.errors import P2PError, StickFull, StickReadOnly, WriteVerifyFailed

DEFAULT_MAX_FILE_SIZE = 4 * 1024**3 - 64 * 1024**2  # FAT32 holds files under 4 GiB
MARGIN = 1024 * 1024
BLOCK = 1 << 20
READ_BLOCK = 4 << 20  # read-back: large direct reads, hashed on a helper thread


def _hash_range(path: Path, start: int, length: int) -> bytes:
    """SHA-256 of a slice of a file; a whole file (the read-back check) is read
    past the page cache, from the device (p2p/direct.py)."""
    if start == 0 and length == path.stat().st_size:
        return _from_device(path, "sha256")
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        fh.seek(start)
        left = length
        while left:
            block = fh.read(min(BLOCK, left))
            if not block:
                break
            digest.update(block)
            left -= len(block)
    return digest.digest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def write_to_stick(
    src: Path,
    dest_dir: Path,
    *,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    verify: Callable[[list[Path]], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Copy `src` into `dest_dir` under a random name (split into parts if needed)."""
    size = src.stat().st_size
    split = size > max_file_size
    room = max_file_size - parts.HEADER.size
    if split and room <= 0:
        raise ValueError("--max-file-size is too small")
    slices = [(i, min(room, size - i)) for i in range(0, size, room)] if split else [(0, size)]
    if len(slices) > parts.MAX_PARTS:
        raise ValueError("--max-file-size is too small for this bundle")
    need = size + len(slices) * parts.HEADER.size + MARGIN
    free = shutil.disk_usage(dest_dir).free
    if free < need:
        raise StickFull(
            f"not enough free space in {dest_dir}: this bundle needs {_mb(need)}, only "
            f"{_mb(free)} is free; nothing was written"
        )
    base = os.urandom(8).hex() + ".p2p"
    set_id = os.urandom(16)
    written: list[Path] = []
    temps: list[Path] = []
    expected: dict[Path, bytes] = {}
    done = 0
    try:
        for index, (start, length) in enumerate(slices):
            final = dest_dir / (parts.part_name(base, index) if split else base)
            tmp = dest_dir / f".tmp-{os.urandom(6).hex()}"
            temps.append(tmp)
            whole = hashlib.sha256()
            with src.open("rb") as fh, tmp.open("wb") as out:
                if split:
                    head = parts.PartHeader(
                        set_id, index, len(slices), length, _hash_range(src, start, length)
                    ).pack()
                    out.write(head)
                    whole.update(head)
                fh.seek(start)
                left = length
                while left:
                    block = fh.read(min(BLOCK, left))
                    if not block:
                        raise WriteVerifyFailed("the bundle changed while it was being copied")
                    out.write(block)
                    whole.update(block)
                    left -= len(block)
                    done += len(block)
                    if progress:
                        progress(done)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
            temps.remove(tmp)
            written.append(final)
            expected[final] = whole.digest()
        _fsync_dir(dest_dir)
        for path, digest in expected.items():
            if _hash_range(path, 0, path.stat().st_size) != digest:
                raise WriteVerifyFailed(
                    f"{path.name} did not read back as written (a failing stick?); removed it"
                )
        if verify is not None:
            verify(written)
        return written
    except OSError as exc:
        _cleanup(temps + written)
        raise write_error(exc, dest_dir) from exc
    except BaseException as exc:
        _cleanup(temps + written)
        if isinstance(exc, P2PError) or not isinstance(exc, Exception):
            raise
        raise WriteVerifyFailed(f"the written bundle did not verify ({exc}); removed it") from exc


def check_room(dest_dir: Path, need: int = MARGIN) -> None:
    """StickFull unless `dest_dir` has `need` bytes free (checked before writing)."""
    free = shutil.disk_usage(dest_dir).free
    if free < need:
        raise StickFull(
            f"not enough free space in {dest_dir}: this bundle needs at least {_mb(need)}, "
            f"only {_mb(free)} is free; nothing was written"
        )


def read_back(path: Path) -> bytes:
    """BLAKE3 of the whole file, read past the page cache: what the stick holds,
    not what the kernel remembers writing (p2p/direct.py)."""
    return _from_device(path, "blake3")


def _from_device(path: Path, algorithm: str) -> bytes:
    """The digest of a whole file read past the page cache, hashed on a helper thread."""
    digest = BackgroundHash(algorithm, depth=2)  # memory: a few blocks in flight
    try:
        for block in read_blocks(path, READ_BLOCK):
            digest.update(block)
        return bytes(digest.done().digest())
    finally:
        digest.close()


def settle(tmp: Path, dest_dir: Path, blake3: bytes) -> Path:
    """Give a bundle written in place on the stick (`tmp`, a hidden temporary name
    in `dest_dir`) its random name, durably and checked: fsync it, read it back
    from the device and compare with the BLAKE3 of the bytes written, rename it,
    fsync the folder. On any failure the file is removed (nothing half-written
    is ever left under a bundle's name)."""
    final = dest_dir / (os.urandom(8).hex() + ".p2p")
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if not blake3 or read_back(tmp) != blake3:
            raise WriteVerifyFailed(
                f"{final.name} did not read back as written (a failing stick?); removed it"
            )
        os.replace(tmp, final)
        _fsync_dir(dest_dir)
        return final
    except OSError as exc:
        _cleanup([tmp, final])
        raise write_error(exc, dest_dir) from exc
    except BaseException:
        _cleanup([tmp, final])
        raise


def write_error(exc: OSError, dest_dir: Path) -> P2PError:
    """The plain sentence for a failed write to a stick."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StickFull("the destination ran out of space while writing; nothing was kept")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StickReadOnly(
            f"{dest_dir} is read-only (a write-protected stick, or no permission to write "
            "there); nothing was written to it"
        )
    return WriteVerifyFailed(
        f"writing to {dest_dir} failed ({exc.strerror or exc}); was the stick removed? "
        "Nothing was kept"
    )


def _cleanup(paths: list[Path]) -> None:
    for p in paths:
        try:
            p.unlink(missing_ok=True)
        except OSError:
            pass
