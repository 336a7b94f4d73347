"""Bulk commands keep freed large buffers (p2p/cli/allocator.py): which commands
ask for it, and that it does what it is for (no fresh page faults for every
1 MiB buffer), measured in a child process."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from p2p.cli import allocator
from tests.helpers import cli as run
from tests.test_cli_start import loaded_by

ROOT = Path(__file__).resolve().parents[1]


def test_which_command_lines_move_bulk_data() -> None:
    bulk = [
        ["export", "--out", "x.p2p"],
        ["--home", "/tmp/h", "import", "x.p2p"],
        ["usb", "sync", "/media/stick"],
        ["attachment", "save", "ab12", "--out", "f"],
        ["post", "3f2a", "see this", "--attach", "film.mp4"],
        ["chat", "send", "3f2a", "general", "hi", "--attach", "a.jpg"],
        ["--json", "verify", "x.p2p"],
    ]
    light = [
        ["post", "3f2a", "hello"],
        ["--home", "export", "feed", "3f2a"],  # a home folder named "export"
        ["serve"],
        ["app"],
        ["whoami"],
        [],
    ]
    assert all(allocator.moves_bulk(a) for a in bulk)
    assert not any(allocator.moves_bulk(a) for a in light)


FAULTS = """
import os, resource, sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
sys.path.insert(0, {root!r})
if {keep!r}:
    from p2p.cli.allocator import keep_large_buffers
    keep_large_buffers()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
piece = os.urandom(1 << 20)
def read(i):
    return bytes(bytearray(piece))  # a chunk read on a helper thread (a fresh 1 MiB)
ahead = deque()
before = faults()
with ThreadPoolExecutor(2) as pool:  # the export's pattern: read ahead, 4 deep
    for i in range(200):
        ahead.append(pool.submit(read, i))
        if len(ahead) > 4:
            data = ahead.popleft().result()
            sealed = data + data[:16]  # this thread's own 1 MiB + 16
            del sealed, data
print(faults() - before)
"""


def faults(keep: bool) -> int:
    code = FAULTS.format(root=str(ROOT), keep=keep)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_kept_buffers_are_not_faulted_in_again() -> None:
    # 600 buffers of 1 MiB made and freed on three threads: by default most come
    # from fresh pages (about 300 faults per MiB here); kept, the first ones' pages
    # serve the later ones
    assert faults(keep=False) > 20_000
    assert faults(keep=True) < 8_000


def test_only_bulk_commands_pay_for_ctypes(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert run(home, "init", "--no-passphrase", "--name", "Ann").returncode == 0
    cid = json.loads(run(home, "community", "create", "Town", "--json").stdout)["id"]
    assert "ctypes" not in loaded_by(home, "post", cid, "hello", watch=("ctypes",))
    assert "ctypes" not in loaded_by(home, "whoami", watch=("ctypes",))
    out = tmp_path / "b.p2p"
    assert "ctypes" in loaded_by(home, "export", "--out", str(out), watch=("ctypes",))
