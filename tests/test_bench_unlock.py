"""bench/bench_unlock.py cannot rot: it runs here at a tiny size (it completes and
prints its table; nothing is timed or compared)."""

from __future__ import annotations

import subprocess
import sys


def test_bench_unlock_smoke() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_unlock", "--posts", "40", "--authors", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "post, after p2p unlock" in out.stdout and "amformat.check" in out.stdout
