"""`usb sync` onto the file systems real sticks use: FAT32 and exFAT.

Bundles and chunks are written past the page cache (O_DIRECT, p2p/direct.py)
and fall back to ordinary writes where a file system refuses that; most sticks
are FAT, so the whole round trip runs on each, through the real CLI. The kernel
here may lack vfat/exfat drivers, so the images are mounted through FUSE
(`fusefat`, `exfat-fuse`); the test skips, saying why, where those are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import cli

MiB = 1024 * 1024


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def _need(*tools: str) -> None:
    if os.geteuid() != 0 or not Path("/dev/fuse").exists():
        pytest.skip("needs root and /dev/fuse to mount a FUSE file system")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian dosfstools/fusefat/exfatprogs/exfat-fuse)")


@contextmanager
def _fat32(tmp: Path) -> Iterator[Path]:
    _need("mkfs.vfat", "fusefat", "fusermount")
    image, mnt = tmp / "fat32.img", tmp / "fat32"
    with image.open("wb") as f:  # sparse; fusefat reports no free space below ~300 MiB
        f.truncate(300 * MiB)
    _run("mkfs.vfat", "-F", "32", str(image))
    mnt.mkdir()
    _run("fusefat", "-o", "rw+", str(image), str(mnt))
    try:
        yield mnt
    finally:
        subprocess.run(["fusermount", "-u", str(mnt)], capture_output=True, timeout=60)


@contextmanager
def _exfat(tmp: Path) -> Iterator[Path]:
    _need("mkfs.exfat", "mount.exfat-fuse", "losetup", "fusermount")
    image, mnt = tmp / "exfat.img", tmp / "exfat"
    with image.open("wb") as f:
        f.truncate(64 * MiB)
    _run("mkfs.exfat", str(image))
    try:
        loop = subprocess.run(
            ["losetup", "-f", "--show", str(image)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"no loop device for the exFAT image: {exc.stderr.strip()}")
    try:
        mnt.mkdir()
        _run("mount.exfat-fuse", loop, str(mnt))
        try:
            yield mnt
        finally:
            subprocess.run(["fusermount", "-u", str(mnt)], capture_output=True, timeout=60)
    finally:
        subprocess.run(["losetup", "-d", loop], capture_output=True, timeout=60)


def ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0, res.stdout + res.stderr
    return res


@pytest.mark.parametrize("mount", [_fat32, _exfat], ids=["fat32", "exfat"])
def test_usb_sync_round_trip_on_a_fat_stick(mount, tmp_path: Path) -> None:  # noqa: ANN001
    ana, ben = tmp_path / "ana", tmp_path / "ben"
    for h in (ana, ben):
        ok(cli(h, "init", "--no-passphrase"))
    film = tmp_path / "film.bin"
    film.write_bytes(os.urandom(3 * MiB + 5))  # three whole chunks and a short last one
    posted = {}
    for private in (True, False):
        made = ["community", "create", "Private" if private else "Open", "--json"]
        cid = json.loads(ok(cli(ana, *made, *(["--private"] if private else []))).stdout)["id"]
        inv = tmp_path / f"{cid}.inv"
        ok(cli(ana, "community", "invite", cid, "--out", str(inv), "--no-passphrase"))
        ok(cli(ben, "community", "join", str(inv)))
        out = ok(cli(ana, "post", cid, "a film", "--attach", str(film), "--json")).stdout
        posted[cid] = json.loads(out)["attachments"][0]["hash"]

    with mount(tmp_path) as stick:
        ok(cli(ana, "usb", "sync", str(stick)))
        on_stick = sorted(p.name for p in stick.iterdir())
        assert len(on_stick) == 2 and all(n.endswith(".p2p") for n in on_stick), on_stick
        ok(cli(ben, "usb", "sync", str(stick)))
        assert not [p for p in stick.iterdir() if p.name.startswith(".")]  # no temporary left

    for cid, aid in posted.items():
        listed = json.loads(ok(cli(ben, "feed", cid, "--json")).stdout)
        assert "a film" in json.dumps(listed)
        saved = tmp_path / f"{cid}.out"
        ok(cli(ben, "attachment", "save", aid, "--out", str(saved)))
        assert saved.read_bytes() == film.read_bytes()
