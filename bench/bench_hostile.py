"""Hostile-input benchmark: what a hostile bundle costs the importer, and what the checks cost.

    python -m bench.bench_hostile [--posts 100000] [--authors 50] [--bombs 10,50,200]

1. Peak memory of `p2p import` (a whole command in its own process; its own
   `ru_maxrss` through os.wait4) for bundles carrying a decompression bomb: a
   member's validly signed bundle with one `save` record whose columns
   inflate to BOMB MB, against the bundle's size and against importing the
   same bundle without the bomb. The physical reference is the bundle's own
   size: the importer must stay within a fixed budget plus a small multiple of it.
2. Import of an honest bundle of POSTS posts by AUTHORS authors into a fresh
   store, in process, with the acceptance checks added for hostile members
   timed separately (per-author sequence chains and forks, pricing outside
   bytes before loading, the load-back check, pending admission): the ratio
   of the whole import to the import without those parts ("before").

Prints a table; asserts nothing but that each step completes.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_bundle import build_store
from p2p import community as cm
from p2p import invites
from p2p.bundle import export
from p2p.docref import CHAT, DocRef
from p2p.home import Home
from tests import hostile


def run(home: Path, *args: str) -> tuple[float, int, int]:
    """(seconds, peak RSS KiB, exit status) of one whole `p2p` command."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    env["P2P_HOME"] = str(home)
    with tempfile.TemporaryFile() as out:
        t = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "p2p.cli.main", *args], stdout=out, stderr=out, env=env
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
        if code not in (0, 1) or "Traceback" in text:
            raise SystemExit(f"p2p {' '.join(args)} failed: {text[-2000:]}")
        return elapsed, usage.ru_maxrss, code


def make_bundles(tmp: Path, bombs_mb: list[int]) -> None:
    """Homes and bundles for part 1 (run in a child process: building a bomb
    takes memory, and a child forked from a big process inherits its peak)."""
    owner = Home(tmp / "owner")
    owner.create_identity(None)
    c = cm.create(owner, "Bench")
    mallory = Home(tmp / "mallory")
    mallory.create_identity(None)
    invites.join(mallory, invites.write(owner, c))
    cm.set_profile(mallory, "Mallory", None)
    mc = cm.resolve(mallory, c.hex)
    with export.scratch_dir(mallory) as scratch:
        built = export.build(mallory, export.domains([mc])[0], Path(scratch))
        assert built is not None
        hostile.doctor_bundle(built.path, tmp / "bundle0.p2p", mallory.identity)
        for i, mb in enumerate(bombs_mb, 1):
            ref = DocRef(c.id, CHAT, mallory.public_key)
            data = hostile.bomb_save(mb * 1_000_000, mallory, ref)
            rec = hostile.save_record(ref, data, hostile.bomb_sigs(mallory, ref, data))
            hostile.doctor_bundle(built.path, tmp / f"bundle{i}.p2p", mallory.identity, [rec])
    for i in range(len(bombs_mb) + 1):
        reader = Home(tmp / f"reader{i}")
        reader.create_identity(None)
        invites.join(reader, invites.write(owner, c))
        reader.close()
    mallory.close()
    owner.close()


def bomb_rows(tmp: Path, bombs_mb: list[int]) -> list[tuple[str, int, int, int, str]]:
    subprocess.run(
        [sys.executable, "-m", "bench.bench_hostile", "--make", str(tmp), "--bombs"]
        + [",".join(map(str, bombs_mb))],
        check=True,
    )
    labels = ["honest bundle"] + [f"bomb inflating to {mb} MB" for mb in bombs_mb]
    rows = []
    for i, label in enumerate(labels):
        path = tmp / f"bundle{i}.p2p"
        _t, rss, code = run(tmp / f"reader{i}", "import", str(path))
        rows.append((label, path.stat().st_size, rss, code, "refused" if code else "imported"))
    return rows


TIMED = """
import sys, time
from pathlib import Path
from p2p import accept, binding, sequence
from p2p.bundle.importer import import_bundle
from p2p.home import Home
spent = [0.0]
def timed(owner, name):
    real = getattr(owner, name)
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            spent[0] += time.perf_counter() - t
    setattr(owner, name, wrapper)
timed(sequence, "check")
timed(binding, "check_inflation")
timed(binding, "reloads")
timed(accept.Acceptor, "_admit_pending")
h = Home(Path(sys.argv[1]))
t = time.perf_counter()
r = import_bundle(h, [Path(sys.argv[2])])
total = time.perf_counter() - t
assert not r.report.rejected, r.report.rejected[:3]
print(total, spent[0], r.report.applied)
"""


def honest_import(tmp: Path, posts: int, authors: int) -> tuple[float, float, int, int]:
    owner, c, _save, _people = build_store(tmp / "big", posts, authors)
    with export.scratch_dir(owner) as scratch:
        built = export.build(owner, export.domains([c])[0], Path(scratch))
        assert built is not None
        bundle = tmp / "honest.p2p"
        os.replace(built.path, bundle)
    reader = Home(tmp / "big-reader")
    reader.create_identity(None)
    invites.join(reader, invites.write(owner, c))
    reader.close()
    owner.close()
    out = subprocess.run(
        [sys.executable, "-c", TIMED, str(tmp / "big-reader"), str(bundle)],
        capture_output=True,
        text=True,
        check=True,
    )
    total, checks, applied = out.stdout.split()
    return float(total), float(checks), int(applied), bundle.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=100_000)
    ap.add_argument("--authors", type=int, default=50)
    ap.add_argument("--bombs", default="10,50,100,400", help="MB each bomb inflates to")
    ap.add_argument("--make", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    bombs = [int(x) for x in args.bombs.split(",") if x]
    if args.make:
        make_bundles(args.make, bombs)
        return
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "bombs").mkdir()
        rows = bomb_rows(tmp / "bombs", bombs)
        total, checks, applied, size = honest_import(tmp, args.posts, args.authors)
    print(f"p2p hostile-input benchmark ({platform.machine()}, Python {platform.python_version()})")
    print()
    print(f"{'p2p import of':<34}{'bundle':>12}{'peak RSS':>12}{'RSS/bundle':>12}  result")
    for label, bsize, rss, _code, verdict in rows:
        ratio = rss * 1024 / bsize
        print(f"{label:<34}{bsize:>11,}B{rss / 1024:>10.1f}MB{ratio:>11.0f}x  {verdict}")
    print()
    before = total - checks
    print(
        f"honest import, {args.posts} posts by {args.authors} authors "
        f"({size / 1e6:.1f} MB bundle, {applied} changes applied)"
    )
    print(f"{'  whole import (s)':<34}{total:>12.2f}")
    print(f"{'  of which hostile-member checks':<34}{checks:>12.2f}")
    print(f"{'  import without them (s)':<34}{before:>12.2f}")
    print(f"{'  ratio with / without':<34}{total / before:>12.3f}")


if __name__ == "__main__":
    main()
