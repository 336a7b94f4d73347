"""Fuzzing in the suite: every target over its seeds, then a short bounded run.

The long run is `python -m fuzz.run TARGET` (fuzz/README.md). Here each target
first handles every seed from bundles/vectors/ and every crash input found so
far (kept as vectors), then gets a few seconds of coverage-guided fuzzing with
atheris in a child process, or, where atheris is not installed, a few hundred
hypothesis-mutated seeds in process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import targets

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 2  # per target; the long run is documented in fuzz/README.md


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_every_seed_is_handled(name: str):
    seeds = targets.seeds(name)
    assert seeds, f"no seeds for {name}"
    for data in seeds:
        targets.TARGETS[name](data)


def _fuzz_vectors() -> list[tuple[str, Path]]:
    manifest = json.loads((targets.VECTORS / "manifest.json").read_text())
    return [
        (entry["fuzz_target"], targets.VECTORS / entry.get("file", name))
        for name, entry in manifest.items()
        if isinstance(entry, dict) and entry.get("fuzz_target")
    ]


NO_VECTORS = [pytest.param("", Path(), marks=pytest.mark.skip(reason="no crash vectors yet"))]


@pytest.mark.parametrize("name,path", _fuzz_vectors() or NO_VECTORS)
def test_crash_inputs_found_by_fuzzing_stay_fixed(name: str, path: Path):
    targets.TARGETS[name](path.read_bytes())


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_a_short_atheris_run_finds_nothing(name: str, tmp_path: Path):
    corpus = tmp_path / "corpus"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "fuzz.run",
            name,
            str(corpus),
            f"-max_total_time={SECONDS}",
            "-timeout=20",
            "-rss_limit_mb=1500",
            f"-artifact_prefix={tmp_path}/",
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SECONDS + 90,
    )
    crashes = [p.name for p in tmp_path.glob("crash-*")]
    assert res.returncode == 0 and not crashes, res.stderr[-3000:]


def _mutated(seed: bytes, edits: list[tuple[int, int, bytes]], cut: int) -> bytes:
    data = bytearray(seed)
    for pos, kind, junk in edits:
        at = pos % (len(data) + 1)
        if kind == 0:
            data[at : at + len(junk)] = junk  # overwrite
        elif kind == 1:
            data[at:at] = junk  # insert
        else:
            del data[at : at + len(junk)]  # erase
    return bytes(data[: len(data) - cut % 8])


@pytest.mark.skipif(importlib.util.find_spec("atheris") is not None, reason="atheris runs instead")
@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_hypothesis_mutated_seeds_find_nothing(name: str):
    seeds = targets.seeds(name)

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.sampled_from(seeds),
        st.lists(
            st.tuples(st.integers(0, 1 << 20), st.integers(0, 2), st.binary(1, 8)), max_size=5
        ),
        st.integers(0, 7),
    )
    def run(seed: bytes, edits: list, cut: int) -> None:
        targets.TARGETS[name](_mutated(seed, edits, cut))

    run()


def test_seeds_are_distinct_inputs():
    for name in targets.TARGETS:
        digests = {hashlib.sha256(s).digest() for s in targets.seeds(name)}
        assert len(digests) >= 2, name
