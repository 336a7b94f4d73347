"""Files that appear whole or not at all.

Anything the user carries away (bundles, invites, key backups, exported
documents) is written under a temporary name in the destination folder,
flushed and fsynced, renamed into place and the folder fsynced: a pulled stick
or a full disk leaves the old file, or none, never half of one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_file(dest: Path, fill: Callable[[BinaryIO], None]) -> Path:
    tmp = dest.with_name(f".{dest.name}.tmp-{os.urandom(4).hex()}")
    try:
        with tmp.open("wb") as out:
            fill(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return dest


def write_bytes(dest: Path, data: bytes) -> Path:
    def fill(out: BinaryIO) -> None:
        out.write(data)

    return write_file(dest, fill)
