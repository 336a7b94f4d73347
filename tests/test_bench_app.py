"""Benchmarks cannot rot: the app benchmark at a tiny size (it completes and prints
its table; nothing is timed or compared)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_app_smoke() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_app", "--sizes", "60", "--authors", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("p2p app benchmark")
    for label in ("start-up", "feed page, warm", "p2p feed ID", "live: CLI post start"):
        assert any(line.startswith(label) for line in lines), label
    assert set(json.loads(lines[-1])["60"]) >= {"feed_warm", "cli_feed", "live"}
