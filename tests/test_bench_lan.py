"""The LAN benchmark cannot rot: it runs here at a tiny size (it completes and prints
its table; nothing is timed or compared). The namespace parts are exercised by
tests/test_lan_mdns.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.timeout(300)
def test_bench_lan_smoke() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_lan", "--posts", "40", "--authors", "2"]
        + ["--hostile", "24", "--no-netns"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("p2p LAN benchmark")
    for row in ("full sync", "delta sync", "same full sync, 24 hostile", "server memory"):
        assert any(line.startswith(row) for line in lines), row
    figures = json.loads(lines[-1])
    assert figures["peak_rss"] > 0 and figures["loaded_s"] > 0
