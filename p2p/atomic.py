"""Files that appear whole or not at all, and never in place of something else.

Anything the user carries away (bundles, invites, key backups, exported
documents) is written under a temporary name in the destination folder,
flushed and fsynced, renamed into place and the folder fsynced: a pulled stick
or a full disk leaves the old file, or none, never half of one.

It is also the one place that decides what may be replaced: an existing file
only when the caller passes `force=True` (the CLI's `--force`), and never a
device, a fifo, a socket or a folder, even with `force` (run as root,
`export --out /dev/full` used to replace the device node). Files are created
0600 whatever the umask: they hold keys, invites and private messages.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from p2p.errors import NotARegularFile, OutputExists

FILE_MODE = 0o600


def check_destination(dest: Path, force: bool = False) -> None:
    """Raise unless writing `dest` replaces nothing it must not (see the module docstring)."""
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or stat.S_ISREG(st.st_mode):
        if not force:
            raise OutputExists(
                f"{dest} already exists: choose another name, or add --force to replace it",
                path=str(dest),
            )
        return
    raise NotARegularFile(
        f"{dest} is a device, a pipe or a folder, not a regular file; nothing was written",
        path=str(dest),
    )


def write_file(dest: Path, fill: Callable[[BinaryIO], None], *, force: bool = False) -> Path:
    """Write `dest` atomically with what `fill` writes; refuse to replace (see above)."""
    dest = Path(dest)
    check_destination(dest, force)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.urandom(4).hex()}")
    try:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), FILE_MODE
        )
        with os.fdopen(fd, "wb") as out:
            fill(out)
            out.flush()
            os.fsync(out.fileno())
        _move_into_place(tmp, dest, force)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(dest.parent, os.O_RDONLY)
    return dest


def move_into_place(tmp: Path, dest: Path, *, force: bool = False) -> Path:
    """Make the finished file `tmp` (in `dest`'s folder, 0600) durable and give it
    the name `dest` atomically, under the same rules as `write_file` (so a large
    file written in place is never copied)."""
    dest = Path(dest)
    check_destination(dest, force)
    try:
        _fsync(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        _move_into_place(Path(tmp), dest, force)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync(dest.parent, os.O_RDONLY)
    return dest


def _fsync(path: Path, flags: int) -> None:
    """fsync a file or a folder (so a rename in it is durable) by path."""
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_into_place(tmp: Path, dest: Path, force: bool) -> None:
    if force:
        check_destination(dest, force=True)  # it may have become a device meanwhile
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest)  # fails if dest appeared meanwhile: never replaces
    except FileExistsError:
        check_destination(dest, force=False)
        raise
    except OSError as exc:  # a FAT stick has no hard links
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        check_destination(dest, force=False)
        os.replace(tmp, dest)
    else:
        tmp.unlink()


def write_bytes(dest: Path, data: bytes, *, force: bool = False) -> Path:
    def fill(out: BinaryIO) -> None:
        out.write(data)

    return write_file(dest, fill, force=force)


def private_file(path: Path) -> None:
    """Make an existing file the owner's only (0600), whatever the umask made it."""
    try:
        if stat.S_IMODE(os.stat(path).st_mode) != FILE_MODE:
            os.chmod(path, FILE_MODE)
    except FileNotFoundError:
        pass
