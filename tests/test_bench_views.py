"""Benchmarks cannot rot: the views benchmark at a tiny size (it completes and prints
its table; nothing is timed or compared)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_views_smoke() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_views", "--sizes", "60", "--authors", "3", "--no-old"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("p2p views benchmark")
    for label in ("p2p feed ID (30 threads)", "p2p search ID", "p2p post ID", "p2p index rebuild"):
        assert any(line.startswith(label) for line in lines), label
    figures = json.loads(lines[-1])["60"]
    assert figures["bytes"][0] > figures["bytes"][1] > 0
