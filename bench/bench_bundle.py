"""Bundle benchmark: export, verify and import at scale, against git and physical limits.

    python -m bench.bench_bundle [--posts 100000] [--authors 50] [--new 100]
                                 [--members 10,100,1000]

Builds a community of POSTS posts by AUTHORS authors (one Automerge change per
post, as `p2p post` makes them), then measures in the same run, each step as
a whole `p2p` command in its own process (start-up included):

- `p2p export` time and size, size as a ratio to the sum of the documents' save() sizes;
- `p2p verify` time, and its rate against a raw Ed25519 verify loop over one
  message per change (what per-change signatures would cost);
- `p2p import` into a fresh store, against `git clone` from a git bundle of the
  same content as one small commit per post;
- after NEW more posts: `p2p export --since` the first bundle and `p2p import`
  of it, against `git bundle create` of the same NEW commits (`main ^old`), each
  the median of 3 runs;
- peak RSS of every step: `ru_maxrss` of that one process (os.wait4), not of
  the largest child so far;
- the size of a one-post incremental bundle in communities of MEMBERS members.

Prints a table; asserts nothing but that each command succeeds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from automerge.core import ROOT, Document, ObjType, ScalarType
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench import measure
from p2p import community as cm
from p2p import invites, signing
from p2p.docref import FEED, PROFILE, DocRef
from p2p.documents import as_raw, put_int, put_str
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


def build_store(
    path: Path, posts: int, authors: int
) -> tuple[Home, cm.Community, int, list[Identity]]:
    """A home holding `posts` posts by `authors` authors, each post one signed change."""
    owner = Home(path / "owner")
    owner.create_identity(None)
    c = cm.create(owner, "Bench")
    per = posts // authors
    save_total = 0
    rng = random.Random(7)
    people = []
    for _ in range(authors):
        me = Identity.generate()
        people.append(me)
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
    return owner, c, save_total, people


def add_post(home: Home, c: cm.Community, author: Identity, body: str) -> None:
    """One more post by `author`, through the store's own write path (a signed change)."""

    def edit(doc: Document, tx) -> None:  # noqa: ANN001
        got = doc.get(ROOT, "posts")
        posts = got[1] if got else tx.put_object(ROOT, "posts", ObjType.Map)
        p = tx.put_object(posts, os.urandom(8).hex(), ObjType.Map)
        put_str(tx, p, "text", body)
        put_int(tx, p, "ts", int(time.time() * 1000))

    home.docs.write(DocRef(c.id, FEED, author.public_key), author, edit)


def add_member(home: Home, c: cm.Community, rng: random.Random) -> Identity:
    """A member with a profile and one post, as the owner's store holds them."""
    me = Identity.generate()

    def profile(doc: Document, tx) -> None:  # noqa: ANN001
        put_str(tx, ROOT, "name", f"member {rng.randint(0, 10**6)}")
        put_str(tx, ROOT, "age", me.age_recipient)

    home.docs.write(DocRef(c.id, PROFILE, me.public_key), me, profile)
    add_post(home, c, me, text(rng))
    return me


def raw_verify_rate(n: int) -> float:
    key = Ed25519PrivateKey.generate()
    pub = key.public_key()
    msgs = [signing.TAG + os.urandom(16) + os.urandom(32) for _ in range(n)]
    sigs = [key.sign(m) for m in msgs]
    t = time.perf_counter()
    for m, s in zip(msgs, sigs, strict=True):
        pub.verify(s, m)
    return n / (time.perf_counter() - t)


def p2p(home: Path, *args: str) -> tuple[float, int, str]:
    """One whole `p2p` command in its own process: (seconds, its peak RSS in KiB, stdout).

    Its own peak, not the largest child so far (RUSAGE_CHILDREN) nor this process's
    size when it forked (`bench/measure.py`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    env["P2P_HOME"] = str(home)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        got = measure.run(
            [sys.executable, "-m", "p2p.cli.main", *args], stdout=out, stderr=err, env=env
        )
        out.seek(0)
        err.seek(0)
        if got.returncode != 0:
            raise SystemExit(f"p2p {' '.join(args)} failed: {err.read().decode()[-2000:]}")
        return got.seconds, got.rss_kib, out.read().decode()


INC_WORK = """
import sys, time
from pathlib import Path
from p2p.home import Home
from p2p.bundle import export as ex
from p2p.bundle.verify import inventory_of
from p2p.community import all_communities
h = Home(Path(sys.argv[1]))
h.identity  # unlocking is not the work measured
t = time.perf_counter()
peer = inventory_of([Path(sys.argv[2])], None, h) if "home" in inventory_of.__code__.co_varnames \
    else inventory_of([Path(sys.argv[2])])
with ex.scratch_dir(h) as tmp:
    b = ex.build(h, ex.domains(all_communities(h))[0], Path(tmp), peer=peer)
print(time.perf_counter() - t)
"""


def in_process(code: str, *args: str) -> float:
    """The work of a step without interpreter start-up and imports (seconds)."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return float(out.stdout.split()[-1])


def git(repo: Path, *args: str, stdin: bytes | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(["git", "-C", str(repo), *args], input=stdin, check=True, capture_output=True)
    return time.perf_counter() - t


def fast_import(first: int, count: int, rng: random.Random) -> bytes:
    stream = [] if not first else [b"reset refs/heads/main\nfrom refs/heads/main^0\n\n"]
    for i in range(first, first + count):
        body = text(rng).encode()
        msg = f"post {i}".encode()
        stream.append(b"commit refs/heads/main\n")
        stream.append(b"committer Bench <b@x> %d +0000\n" % (1_700_000_000 + i))
        stream.append(b"data %d\n%s\n" % (len(msg), msg))
        stream.append(
            b"M 100644 inline posts/%02x/%d.txt\ndata %d\n%s\n" % (i % 256, i, len(body), body)
        )
    return b"".join(stream)


def git_bench(tmp: Path, posts: int, new: int) -> dict[str, float]:
    """The same content as one small commit per post (git fast-import), then NEW more."""
    repo = tmp / "git-src"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    rng = random.Random(7)
    git(repo, "fast-import", "--quiet", stdin=fast_import(0, posts, rng))
    out: dict[str, float] = {}
    bundle = tmp / "posts.gitbundle"
    out["create"] = git(repo, "bundle", "create", "-q", str(bundle), "main")
    out["verify"] = git(repo, "bundle", "verify", "-q", str(bundle))
    t = time.perf_counter()
    subprocess.run(
        ["git", "clone", "-q", str(bundle), str(tmp / "git-clone")], check=True, capture_output=True
    )
    out["clone"] = time.perf_counter() - t
    out["size"] = bundle.stat().st_size
    old = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "main"], check=True, capture_output=True, text=True
    ).stdout.strip()
    git(repo, "fast-import", "--quiet", stdin=fast_import(posts, new, rng))
    incs = [tmp / f"new{i}.gitbundle" for i in range(3)]
    out["inc_create"] = statistics.median(
        git(repo, "bundle", "create", "-q", str(f), "main", f"^{old}") for f in incs
    )
    inc = incs[0]
    clone = tmp / "git-clone"
    git(clone, "bundle", "verify", "-q", str(inc))
    out["inc_pull"] = git(clone, "pull", "-q", str(inc), "main")
    out["inc_size"] = inc.stat().st_size
    return out


def disk_copy_rate(tmp: Path, size: int) -> float:
    src = tmp / "copy-src"
    src.write_bytes(os.urandom(size))
    t = time.perf_counter()
    shutil.copyfile(src, tmp / "copy-dst")
    with open(tmp / "copy-dst", "rb+") as fh:
        os.fsync(fh.fileno())
    return size / (time.perf_counter() - t)


def member_sizes(tmp: Path, counts: list[int]) -> list[tuple[int, int, int]]:
    """(members, full bundle bytes, one-post `export --since` bundle bytes) per size."""
    rng = random.Random(11)
    out = []
    for n in counts:
        where = tmp / f"members-{n}"
        owner = Home(where)
        owner.create_identity(None)
        c = cm.create(owner, "Members")
        people = [add_member(owner, c, rng) for _ in range(n)]
        owner.close()
        full = tmp / f"members-{n}.p2p"
        p2p(where, "export", "--out", str(full))
        owner = Home(where)
        add_post(owner, c, people[0], text(rng))
        owner.close()
        inc = tmp / f"members-{n}-inc.p2p"
        p2p(where, "export", "--since", str(full), "--out", str(inc))
        out.append((n, full.stat().st_size, inc.stat().st_size))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=100_000)
    ap.add_argument("--authors", type=int, default=50)
    ap.add_argument("--new", type=int, default=100, help="posts in the incremental export")
    ap.add_argument("--members", default="10,100,1000", help="community sizes ('' for none)")
    args = ap.parse_args()
    rows: list[tuple[str, str, str]] = []
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        t0 = time.perf_counter()
        owner, c, save_total, people = build_store(tmp, args.posts, args.authors)
        invite = tmp / "invite"
        invite.write_bytes(invites.write(owner, c))
        owner.close()
        build_s = time.perf_counter() - t0
        changes = args.posts + 2 * args.authors
        src, fresh = tmp / "owner", tmp / "fresh"
        fresh_home = Home(fresh)
        fresh_home.create_identity(None)
        invites.join(fresh_home, invite.read_bytes())
        fresh_home.close()

        start_s = min(p2p(src, "--version")[0] for _ in range(3))
        bundle = tmp / "bench.p2p"
        ex_s, ex_rss, _ = p2p(src, "export", "--out", str(bundle))
        size = bundle.stat().st_size
        ve_s, ve_rss, _ = p2p(tmp / "nobody", "verify", str(bundle))
        im_s, im_rss, _ = p2p(fresh, "import", str(bundle))

        owner = Home(src)
        rng = random.Random(3)
        for i in range(args.new):
            add_post(owner, c, people[i % len(people)], text(rng))
        owner.close()
        # median of 3 runs (each to its own file), as for git below: one run of a
        # 0.1-0.2 s command on a shared machine can be off by half
        incs = [tmp / f"new{i}.p2p" for i in range(3)]
        runs = [p2p(src, "export", "--since", str(bundle), "--out", str(f)) for f in incs]
        ix_s = statistics.median(r[0] for r in runs)
        ix_rss = max(r[1] for r in runs)
        inc = incs[0]
        inc_size = inc.stat().st_size
        work_s = min(in_process(INC_WORK, str(src), str(bundle)) for _ in range(3))
        ii_s, ii_rss, _ = p2p(fresh, "import", str(inc))

        raw = raw_verify_rate(min(changes, 20_000))
        per_change_verify = changes / raw
        g = git_bench(tmp, args.posts, args.new)
        copy = disk_copy_rate(tmp, max(size, 1 << 20))
        counts = [int(x) for x in args.members.split(",") if x.strip()]
        members = member_sizes(tmp, counts)
        figures = {
            "startup_s": start_s,
            "export_s": ex_s,
            "import_s": im_s,
            "export_rss_kib": ex_rss,
            "import_rss_kib": im_rss,
            "inc_export_s": ix_s,
            "inc_export_work_s": work_s,
            "inc_import_s": ii_s,
            "git_inc_create_s": g["inc_create"],
            "bundle_bytes": size,
            "inc_bundle_bytes": inc_size,
            "save_bytes": save_total,
            **{f"one_post_bytes_{n}": b for n, _full, b in members},
        }

        mib = 1024
        rows += [
            ("posts / authors / changes", f"{args.posts} / {args.authors} / {changes}", ""),
            ("build store (setup)", f"{build_s:.1f} s", ""),
            ("sum of save() sizes", f"{save_total / 1e6:.2f} MB", ""),
            ("p2p --version (start-up, best of 3)", f"{start_s:.2f} s", "in every command below"),
            ("p2p export", f"{ex_s:.2f} s", f"peak RSS {ex_rss / mib:.0f} MiB"),
            (
                "bundle size",
                f"{size / 1e6:.2f} MB",
                f"{size / save_total:.2f}x save() (target <= 1.3)",
            ),
            (
                "p2p verify",
                f"{ve_s:.2f} s",
                f"peak RSS {ve_rss / mib:.0f} MiB; {changes / ve_s:,.0f} changes/s",
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
            ("p2p import (fresh store)", f"{im_s:.2f} s", f"peak RSS {im_rss / mib:.0f} MiB"),
            (
                "git bundle create / verify / clone",
                f"{g['create']:.2f} / {g['verify']:.2f} / {g['clone']:.2f} s",
                f"git bundle {g['size'] / 1e6:.2f} MB",
            ),
            (
                "ours / git: create, import",
                f"{ex_s / g['create']:.2f} / {im_s / g['clone']:.2f}",
                "(git bundle verify checks only refs, not content)",
            ),
            (
                f"p2p export --since, {args.new} new posts",
                f"{ix_s:.2f} s",
                f"median of 3; peak RSS {ix_rss / mib:.0f} MiB; {inc_size} bytes",
            ),
            (
                "  of which the export work itself",
                f"{work_s:.3f} s",
                f"best of 3, in process; {work_s / g['inc_create']:.1f}x git (target <= 3x)",
            ),
            (
                f"p2p import of those {args.new}",
                f"{ii_s:.2f} s",
                f"peak RSS {ii_rss / mib:.0f} MiB",
            ),
            (
                f"git bundle create main ^old, {args.new} commits",
                f"{g['inc_create']:.3f} s",
                f"median of 3; {g['inc_size']:.0f} bytes; git pull from it {g['inc_pull']:.3f} s",
            ),
            (
                "ours / git: incremental export",
                f"{ix_s / g['inc_create']:.1f}x",
                "(target <= 3x at 100k posts)",
            ),
            (
                "raw disk copy + fsync",
                f"{copy / 1e6:.0f} MB/s",
                f"bundle write at disk speed would take {size / copy:.3f} s",
            ),
        ]
        for n, full_b, one_b in members:
            rows.append(
                (
                    f"one-post bundle, {n} members",
                    f"{one_b / 1000:.1f} KB",
                    f"(target <= 8 KB at 1,000); full bundle {full_b / 1000:.0f} KB",
                )
            )
    print(
        f"p2p bundle benchmark — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>24}  {note}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
