"""What unlocking costs, and what `p2p post` costs once unlocked (issue 12).

    python -m bench.bench_unlock [--posts 100000] [--authors 50]

Builds a home whose identity is passphrase-protected, holding `--posts` posts
by `--authors` authors, then measures whole `p2p` processes (start-up
included; peak RSS of that one process via os.wait4):

- `post` with the passphrase given (every command derives the key), and
  `post` after `p2p unlock` (the agent hands the key over);
- `unlock` itself and `whoami` (which must derive nothing);
- the key derivation alone: age/scrypt as pyrage picks its work factor (what
  every command paid before) against p2p-sealed-v2 (scrypt 2^16), in process.

Also prices Automerge bytes: `amformat.check` against `Document.load` of the
largest feed, as a ratio (the bound must be cheap next to the load it guards).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_bundle import build_store
from p2p import amformat
from p2p import identity as ident

PASS = "bench passphrase"


def p2p(home: Path, *args: str, passphrase: str | None = None) -> tuple[float, int]:
    """One whole `p2p` command: (seconds, its own peak RSS in KiB)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    env["P2P_HOME"] = str(home)
    env["P2P_AGENT_DIR"] = str(home.parent / "agent")
    if passphrase is not None:
        env["P2P_PASSPHRASE"] = passphrase
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "p2p.cli.main", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"p2p {' '.join(args)} failed: {err[-2000:]}")
    return elapsed, usage.ru_maxrss


def derive(kind: str) -> tuple[float, int]:
    """One key derivation in a fresh process: (seconds, peak RSS KiB)."""
    sealing = "pyrage.passphrase.encrypt(me.secret_bytes(), 'p')"
    if kind != "age":
        sealing = "ident.seal(me, 'p')"
    code = f"""
import time, resource, pyrage
from p2p import identity as ident
me = ident.Identity.generate()
blob = {sealing}
t = time.perf_counter()
ident.unseal(blob, 'p')
print(time.perf_counter() - t)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    _pid, _status, usage = os.wait4(proc.pid, 0)
    assert proc.stdout is not None
    seconds = float(proc.stdout.read().decode().strip().splitlines()[-1])
    proc.stdout.close()
    return seconds, usage.ru_maxrss


def price(home: Path) -> tuple[int, float, float, float]:
    """(bytes, check seconds, load seconds, load MiB) for the home's largest document."""
    import sqlite3

    from automerge.core import Document

    con = sqlite3.connect(home / "p2p.db")
    data = max((r[0] for r in con.execute("SELECT snapshot FROM docs")), key=len)
    con.close()
    t = time.perf_counter()
    amformat.check(data)
    check_s = time.perf_counter() - t
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    Document.load(data)
    load_s = time.perf_counter() - t
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return len(data), check_s, load_s, grown


def build(tmp: Path, posts: int, authors: int) -> None:
    owner, c, _save, _people = build_store(tmp, posts, authors)
    with owner.store.transaction() as db:  # protect the owner's identity
        db.execute("UPDATE identity SET sealed = ?", (ident.seal(owner.identity, PASS),))
    owner.close()
    (tmp / "community").write_text(c.id.hex())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=100_000)
    ap.add_argument("--authors", type=int, default=50)
    ap.add_argument("--build-only", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build_only:
        build(args.build_only, args.posts, args.authors)
        return
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        t0 = time.perf_counter()
        # built in a child: a measured command forked from a big parent would
        # count the parent's pages in its own peak RSS
        subprocess.run(
            [sys.executable, "-m", "bench.bench_unlock", "--build-only", str(tmp),
             "--posts", str(args.posts), "--authors", str(args.authors)],
            check=True,
        )  # fmt: skip
        build_s = time.perf_counter() - t0
        home, cid = tmp / "owner", (tmp / "community").read_text()
        p2p(home, "post", cid, "warm-up", passphrase=PASS)
        locked = p2p(home, "post", cid, "with the passphrase", passphrase=PASS)
        whoami = p2p(home, "whoami", passphrase="wrong")
        unlock = p2p(home, "unlock", "--for", "10m", passphrase=PASS)
        unlocked = min(p2p(home, "post", cid, f"unlocked {i}") for i in range(3))
        p2p(home, "lock")
        age, v2 = derive("age"), derive("v2")
        size, check_s, load_s, load_mib = price(home)

    rows = [
        ("post, passphrase given (derives the key)", locked),
        ("post, after p2p unlock", unlocked),
        ("unlock (once per session)", unlock),
        ("whoami (derives nothing)", whoami),
        ("derivation: age/scrypt at pyrage's factor", age),
        ("derivation: p2p-sealed-v2, scrypt 2^16", v2),
    ]
    print(f"\n{args.posts} posts by {args.authors} authors (built in {build_s:.1f} s)\n")
    print(f"| {'step':44} | wall s | peak RSS MiB |")
    print(f"|{'-' * 46}|--------|--------------|")
    for name, (secs, rss) in rows:
        print(f"| {name:44} | {secs:6.3f} | {rss / 1024:12.1f} |")
    print(
        f"\npost unlocked / post with passphrase: {unlocked[0] / locked[0]:.2f}x wall, "
        f"{unlocked[1] / locked[1]:.2f}x RSS; sealed-v2 / age derivation: "
        f"{v2[0] / age[0]:.2f}x time, {v2[1] / age[1]:.2f}x RSS"
    )
    print(
        f"\namformat.check on the largest feed ({size} bytes): {check_s * 1000:.1f} ms; "
        f"Document.load: {load_s * 1000:.1f} ms, +{load_mib:.0f} MiB "
        f"(check / load = {check_s / load_s:.2f})"
    )


if __name__ == "__main__":
    main()
