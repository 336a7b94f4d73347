"""Bundle benchmark: export, verify and import at scale, against physical limits.

    python -m bench.bench_bundle [--posts 100000] [--authors 50]

Builds a community of POSTS posts by AUTHORS authors (one Automerge change per
post, as `p2p post` makes them), then measures in the same run:

- export time and size, size as a ratio to the sum of the documents' save() sizes;
- verify-only time, and its rate against a raw Ed25519 verify loop over one
  message per change (what per-change signatures would cost);
- import time into a fresh store, against `git clone` from a git bundle of the
  same content as one small commit per post;
- peak RSS of export, verify and import, each in its own process.

Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from automerge.core import ROOT, Document, ObjType, ScalarType
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2p import community as cm
from p2p import invites, signing
from p2p.docref import FEED, DocRef
from p2p.documents import as_raw
from p2p.home import Home
from p2p.identity import Identity

WORDS = (
    "market road village river seed rain school radio stick news water bridge north south "
    "meeting tomorrow bring children teacher bicycle battery harvest rice beans clinic open "
    "closed again after before please thanks everyone welcome repaired broken carry week"
).split()


def text(rng: random.Random) -> str:
    """A post of 8-30 words: realistic size and entropy (repeated text compresses unfairly)."""
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))


def build_store(path: Path, posts: int, authors: int) -> tuple[Home, cm.Community, int]:
    """A home holding `posts` posts by `authors` authors, each post one signed change."""
    owner = Home(path / "owner")
    owner.create_identity(None)
    c = cm.create(owner, "Bench")
    per = posts // authors
    save_total = 0
    rng = random.Random(7)
    for _ in range(authors):
        me = Identity.generate()
        ref = DocRef(c.id, FEED, me.public_key)
        doc = Document(actor_id=me.public_key)
        with doc.transaction() as tx:
            tx.put_object(ROOT, "posts", ObjType.Map)
            tx.put_object(ROOT, "reactions", ObjType.Map)
        posts_obj = doc.get(ROOT, "posts")[1]
        t0 = 1_700_000_000_000
        for i in range(per):
            with doc.transaction() as tx:
                p = tx.put_object(posts_obj, os.urandom(8).hex(), ObjType.Map)
                tx.put(p, "text", ScalarType.Str, text(rng))
                tx.put(p, "ts", ScalarType.Int, t0 + i)
        last = as_raw(doc.get_last_local_change())
        sig = signing.sign(me, ref.id, last.hash)
        with owner.store.transaction() as db:
            owner.docs.replace(db, ref, doc)
            db.execute(
                "INSERT INTO sigs (doc, hash, signer, sig) VALUES (?, ?, ?, ?)", (ref.id, *sig)
            )
        save_total += len(doc.save())
    return owner, c, save_total


def raw_verify_rate(n: int) -> float:
    key = Ed25519PrivateKey.generate()
    pub = key.public_key()
    msgs = [signing.TAG + os.urandom(16) + os.urandom(32) for _ in range(n)]
    sigs = [key.sign(m) for m in msgs]
    t = time.perf_counter()
    for m, s in zip(msgs, sigs, strict=True):
        pub.verify(s, m)
    return n / (time.perf_counter() - t)


def run_child(code: str, *args: str) -> tuple[float, int, str]:
    """Run a step in its own interpreter: (seconds, peak RSS in KiB, stdout)."""
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    elapsed = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, rss, out.stdout


EXPORT = """
import sys, resource, time
from pathlib import Path
from p2p.home import Home
from p2p.bundle import export as ex
from p2p.community import all_communities
t = time.perf_counter()
h = Home(Path(sys.argv[1]))
with ex.scratch_dir(h) as tmp:
    b = ex.build(h, ex.domains(all_communities(h))[0], Path(tmp))
    ex.place(b, Path(sys.argv[2]))
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

VERIFY = """
import sys, resource, time
from pathlib import Path
from p2p.bundle.verify import verify_bundle
t = time.perf_counter()
r = verify_bundle([Path(sys.argv[1])])
assert r.ok, r.faults[:3]
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

IMPORT = """
import sys, resource, time
from pathlib import Path
from p2p.home import Home
from p2p import community as cm
from p2p.bundle.importer import import_bundle
h = Home(Path(sys.argv[1]))
h.create_identity(None)
invites.join(h, Path(sys.argv[3]).read_bytes())
t = time.perf_counter()
r = import_bundle(h, [Path(sys.argv[2])])
assert not r.report.rejected, r.report.rejected[:3]
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, r.report.applied)
"""


def git_bench(tmp: Path, posts: int) -> dict[str, float]:
    """The same content as one small commit per post, via git fast-import."""
    repo = tmp / "git-src"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    stream = []
    rng = random.Random(7)
    for i in range(posts):
        body = text(rng).encode()
        msg = f"post {i}".encode()
        stream.append(b"commit refs/heads/main\n")
        stream.append(b"committer Bench <b@x> %d +0000\n" % (1_700_000_000 + i))
        stream.append(b"data %d\n%s\n" % (len(msg), msg))
        stream.append(
            b"M 100644 inline posts/%02x/%d.txt\ndata %d\n%s\n" % (i % 256, i, len(body), body)
        )
    subprocess.run(
        ["git", "-C", str(repo), "fast-import", "--quiet"], input=b"".join(stream), check=True
    )
    out: dict[str, float] = {}
    bundle = tmp / "posts.gitbundle"
    t = time.perf_counter()
    subprocess.run(
        ["git", "-C", str(repo), "bundle", "create", "-q", str(bundle), "main"],
        check=True,
        capture_output=True,
    )
    out["create"] = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run(
        ["git", "-C", str(repo), "bundle", "verify", "-q", str(bundle)],
        check=True,
        capture_output=True,
    )
    out["verify"] = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run(
        ["git", "clone", "-q", str(bundle), str(tmp / "git-clone")], check=True, capture_output=True
    )
    out["clone"] = time.perf_counter() - t
    out["size"] = bundle.stat().st_size
    return out


def disk_copy_rate(tmp: Path, size: int) -> float:
    src = tmp / "copy-src"
    src.write_bytes(os.urandom(size))
    t = time.perf_counter()
    shutil.copyfile(src, tmp / "copy-dst")
    with open(tmp / "copy-dst", "rb+") as fh:
        os.fsync(fh.fileno())
    return size / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=100_000)
    ap.add_argument("--authors", type=int, default=50)
    args = ap.parse_args()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        t0 = time.perf_counter()
        owner, c, save_total = build_store(tmp, args.posts, args.authors)
        invite = tmp / "invite"
        invite.write_bytes(invites.write(owner, c))
        owner.close()
        build_s = time.perf_counter() - t0
        changes = args.posts + 2 * args.authors

        bundle = tmp / "bench.p2p"
        ex_s, ex_rss, _ = run_child(EXPORT, str(tmp / "owner"), str(bundle))
        size = bundle.stat().st_size
        ve_s, ve_rss, _ = run_child(VERIFY, str(bundle))
        im_s, im_rss, out = run_child(IMPORT, str(tmp / "fresh"), str(bundle), str(invite))
        raw = raw_verify_rate(min(changes, 20_000))
        per_change_verify = changes / raw
        git = git_bench(tmp, args.posts)
        copy = disk_copy_rate(tmp, max(size, 1 << 20))

        rows += [
            ("posts / authors / changes", f"{args.posts} / {args.authors} / {changes}", ""),
            ("build store (setup)", f"{build_s:.1f} s", ""),
            ("sum of save() sizes", f"{save_total / 1e6:.2f} MB", ""),
            ("export", f"{ex_s:.2f} s", f"peak RSS {ex_rss / 1024:.0f} MiB"),
            (
                "bundle size",
                f"{size / 1e6:.2f} MB",
                f"{size / save_total:.2f}x save() (target <= 1.3)",
            ),
            (
                "verify only",
                f"{ve_s:.2f} s",
                f"peak RSS {ve_rss / 1024:.0f} MiB; {changes / ve_s:,.0f} changes/s",
            ),
            (
                "raw Ed25519 verify",
                f"{raw:,.0f} /s",
                f"one per change would take {per_change_verify:.1f} s",
            ),
            (
                "verify vs per-change signatures",
                f"{per_change_verify / ve_s:.1f}x faster",
                "(target >= 5x)",
            ),
            ("import (fresh store)", f"{im_s:.2f} s", f"peak RSS {im_rss / 1024:.0f} MiB"),
            (
                "git bundle create / verify / clone",
                f"{git['create']:.2f} / {git['verify']:.2f} / {git['clone']:.2f} s",
                f"git bundle {git['size'] / 1e6:.2f} MB",
            ),
            (
                "ours / git: create, import",
                f"{ex_s / git['create']:.2f} / {im_s / git['clone']:.2f}",
                "(import target <= 1.0; git bundle verify checks only refs, not content)",
            ),
            (
                "raw disk copy + fsync",
                f"{copy / 1e6:.0f} MB/s",
                f"bundle write at disk speed would take {size / copy:.3f} s",
            ),
        ]
    print(
        f"p2p bundle benchmark — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>24}  {note}")
    print(json.dumps({"bundle_bytes": size, "save_bytes": save_total}))


if __name__ == "__main__":
    main()
