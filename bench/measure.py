"""One whole command in its own process: wall time, its own peak RSS, its CPU time.

A child's `ru_maxrss` from `os.wait4` is not its own peak alone: Linux keeps the
high-water mark of the memory the child had before `exec`, a copy of its parent's
(fork). A benchmark that built a large store in-process (a few hundred MB) then
reports that size for every command it runs. So the command runs under GNU time,
a small process that forks the command itself and reports its child's peak
(`%M`); without GNU time, `wait4`'s figure is used and may be inflated.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO


def compiled(tree: Path) -> Path:
    """`tree` with its p2p package byte-compiled (see bench/__init__.py): commands
    timed from it start as an installed p2p does. Returns `tree`."""
    import compileall

    package = tree / "p2p"
    if package.is_dir():
        compileall.compile_dir(str(package), quiet=2, workers=1)
    return tree


def _gnu_time() -> bool:
    try:
        probe = ["/usr/bin/time", "-f", "%M", "true"]
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


GNU_TIME = _gnu_time()


@dataclass
class Measured:
    seconds: float
    rss_kib: int
    cpu: float  # user + system seconds
    returncode: int


def run(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdout: IO[bytes] | int | None = None,
    stderr: IO[bytes] | int | None = None,
    stdin: IO[bytes] | int | None = None,
) -> Measured:
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        wrapped = cmd
        if GNU_TIME:
            wrapped = ["/usr/bin/time", "-f", "%M %U %S", "-o", report.name, *cmd]
        t = time.perf_counter()
        proc = subprocess.Popen(
            wrapped, stdout=stdout, stderr=stderr, stdin=stdin, env=env, cwd=cwd
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t
        code = os.waitstatus_to_exitcode(status)
        rss, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
        if GNU_TIME:
            fields = report.read().split()
            try:  # the last line (a failed command adds one before it)
                rss, cpu = int(fields[-3]), float(fields[-2]) + float(fields[-1])
            except (IndexError, ValueError):
                pass
        return Measured(elapsed, rss, cpu, code)
