"""Import benchmark: `p2p import` of a whole community and of NEW more posts, each as a
whole process, for this checkout and optionally other checkouts in the same run.

    python -m bench.bench_import [--posts 100000] [--authors 50] [--new 100]
                                 [--runs 2] [--code OLD_CHECKOUT ...] [--cache DIR]

Builds the store with bench_bundle's builder (one signed change per post), exports
it and, after NEW more posts, an incremental bundle; then times, alternating between
checkouts (`--code DIR`: another source tree, e.g. `git archive COMMIT | tar -x -C DIR`),
the import of each bundle into a fresh copy of the same home. Each step is a whole
command in its own process (start-up included); peak RSS is that process's own.
Prints a table of the best of RUNS and each checkout's ratio to the first `--code`.
`--cache DIR` keeps the built homes and bundles in DIR and reuses them next time
(building 1M posts takes minutes; delete DIR when done). The home the incremental
bundle is imported into was filled by this checkout's import.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import measure
from bench.bench_bundle import add_post, build_store, p2p, text
from p2p import invites
from p2p.home import Home

HERE = Path(__file__).resolve().parent.parent


def timed_import(code: Path, home: Path, bundle: Path) -> tuple[float, int, float]:
    """(seconds, peak RSS KiB, CPU seconds) of `p2p import BUNDLE` run from the source
    tree `code` (CPU: user + system; on a shared machine wall time waits for others)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    env["P2P_HOME"] = str(home)
    env["PYTHONPATH"] = str(code)
    with tempfile.TemporaryFile() as err:
        got = measure.run(
            [sys.executable, "-m", "p2p.cli.main", "import", str(bundle)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            cwd=code,
        )
        if got.returncode != 0:
            err.seek(0)
            raise SystemExit(f"import failed ({code}): {err.read().decode()[-2000:]}")
    return got.seconds, got.rss_kib, got.cpu


def build(tmp: Path, posts: int, authors: int, new: int) -> None:
    """The owner's home, a joined empty home (`fresh`), the whole community's bundle, an
    incremental one of NEW more posts, and a home holding the first (`have-full`)."""
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    owner, c, _save_total, people = build_store(tmp, posts, authors)
    invite = invites.write(owner, c)
    owner.close()
    fresh = Home(tmp / "fresh")
    fresh.create_identity(None)
    invites.join(fresh, invite)
    fresh.close()
    src, full, inc = tmp / "owner", tmp / "full.p2p", tmp / "inc.p2p"
    p2p(src, "export", "--out", str(full))
    owner = Home(src)
    rng = random.Random(3)
    for i in range(new):
        add_post(owner, c, people[i % len(people)], text(rng))
    owner.close()
    p2p(src, "export", "--since", str(full), "--out", str(inc))
    have_full = tmp / "have-full"
    shutil.copytree(tmp / "fresh", have_full)
    timed_import(HERE, have_full, full)
    (tmp / "built").touch()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=100_000)
    ap.add_argument("--authors", type=int, default=50)
    ap.add_argument("--new", type=int, default=100)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--code", action="append", default=[], help="another checkout to compare")
    ap.add_argument("--cache", help="keep the built homes and bundles here, and reuse them")
    args = ap.parse_args()
    codes = [measure.compiled(Path(c).resolve()) for c in args.code] + [HERE]
    with tempfile.TemporaryDirectory() as t:
        tmp = (
            Path(args.cache) / f"{args.posts}x{args.authors}+{args.new}" if args.cache else Path(t)
        )
        full, inc, have_full = tmp / "full.p2p", tmp / "inc.p2p", tmp / "have-full"
        if not (tmp / "built").exists():
            build(tmp, args.posts, args.authors, args.new)

        best: dict[tuple[int, str], tuple[float, int, float]] = {}
        for _ in range(args.runs):
            for i, code in enumerate(codes):
                for step, start, bundle in (("full", tmp / "fresh", full), ("inc", have_full, inc)):
                    home = tmp / "run"
                    shutil.rmtree(home, ignore_errors=True)
                    shutil.copytree(start, home)
                    got = timed_import(code, home, bundle)
                    if (i, step) not in best or got[0] < best[(i, step)][0]:
                        best[(i, step)] = got
        shutil.rmtree(tmp / "run", ignore_errors=True)
    print(
        f"p2p import benchmark — {args.posts} posts by {args.authors} authors, "
        f"{args.new} new; best of {args.runs}, whole processes, {os.cpu_count()} cores"
    )
    for step, what in (
        ("full", "p2p import (fresh store)"),
        ("inc", f"p2p import, {args.new} new"),
    ):
        for i, code in enumerate(codes):
            s, rss, cpu = best[(i, step)]
            ratio = f"{s / best[(0, step)][0]:.2f}x of first" if len(codes) > 1 else ""
            name = "this checkout" if code == HERE else str(code)
            print(
                f"{what:<28} {name:<36} {s:7.2f} s  cpu {cpu:6.2f} s  {rss / 1024:6.0f} MiB"
                f"  {ratio}"
            )


if __name__ == "__main__":
    main()
