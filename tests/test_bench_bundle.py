"""Benchmarks cannot rot: each runs here at a tiny size (it completes and prints
its table; nothing is timed or compared)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_bench_bundle_smoke() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_bundle",
            "--posts",
            "40",
            "--authors",
            "2",
            "--new",
            "3",
            "--members",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("p2p bundle benchmark")
    for row in (
        "p2p export",
        "p2p verify",
        "p2p import (fresh store)",
        "p2p export --since, 3 new posts",
        "one-post bundle, 3 members",
    ):
        assert any(line.startswith(row) for line in lines), row
    figures = json.loads(lines[-1])
    assert figures["inc_bundle_bytes"] < figures["bundle_bytes"]


def test_bench_import_smoke() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_import", "--posts", "40", "--authors", "2"]
        + ["--new", "3", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("p2p import benchmark")
    assert any(line.startswith("p2p import (fresh store)") for line in lines)
    assert any(line.startswith("p2p import, 3 new") for line in lines)


def test_a_measured_peak_is_the_commands_own_not_the_parents() -> None:
    """Linux counts a child's pre-exec copy of its parent in wait4's ru_maxrss."""
    from bench import measure

    if not measure.GNU_TIME:
        pytest.skip("GNU time is not installed")
    held = b"x" * (200 * 1024 * 1024)  # this process is now 200 MiB larger
    got = measure.run([sys.executable, "-c", "pass"])
    assert got.returncode == 0
    assert 0 < got.rss_kib < 100 * 1024
    assert len(held)
