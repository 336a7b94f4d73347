"""The hostile-input benchmark cannot rot: it runs here at a tiny size (it
completes and prints its table; nothing is timed or compared)."""

from __future__ import annotations

import subprocess
import sys


def test_bench_hostile_smoke() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_hostile", "--posts", "40", "--authors", "2"]
        + ["--bombs", "2,100"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("p2p hostile-input benchmark")
    assert any(line.startswith("honest bundle") and line.endswith("imported") for line in lines)
    assert any(line.startswith("bomb inflating to 100 MB") and "refused" in line for line in lines)
    assert any(line.startswith("  ratio with / without") for line in lines)
