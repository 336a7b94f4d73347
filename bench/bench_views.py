"""Views benchmark: what reading and writing cost as a community's history grows.

    python -m bench.bench_views [--sizes 1000,10000,100000,300000] [--authors 50]

For each size, a home holding that many posts by AUTHORS authors (a fifth of
them replies, some reactions, one hidden post and one banned author) is built
once and cached under /tmp/p2p_bench_views (bulk: one large Automerge
transaction per author; building is not what is measured). Then, each as a
whole `p2p` command in its own process (start-up included; peak RSS is that
process's own `ru_maxrss` from os.wait4, not RUSAGE_CHILDREN):

- `p2p feed ID` (the latest 30 threads), `p2p feed ID --json --last 0` (all,
  streamed), `p2p search ID WORD`, `p2p post ID TEXT`, `p2p chat send ID TEXT`
  (each but `--json --last 0` the median of three runs);
- `p2p index rebuild ID` (reads every document again);
- the store's size with the indexes and without them (a copy, index rows dropped, VACUUM);
- the same `p2p feed ID` as the code stood at the start of the work (878248f,
  which read and merged every document), in the same run, and the ratio.

Prints a table; asserts nothing but that each command succeeds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from automerge.core import ROOT, Document, ObjType, ScalarType

from bench import measure
from p2p import community as cm
from p2p import signing
from p2p.docref import CHAT, FEED, PROFILE, DocRef
from p2p.documents import as_raw
from p2p.home import Home
from p2p.identity import Identity

CACHE = Path("/tmp/p2p_bench_views")
OLD = "878248f"
WORDS = (
    "market road village river seed rain school radio stick news water bridge north south "
    "meeting tomorrow bring children teacher bicycle battery harvest rice beans clinic open "
    "closed again after before please thanks everyone welcome repaired broken carry week"
).split()


def text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))


def _store_doc(home: Home, ref: DocRef, me: Identity, doc: Document) -> None:
    last = as_raw(doc.get_last_local_change())
    sig = signing.sign(me, ref.id, last.hash)
    with home.store.transaction() as db:
        home.docs.replace(db, ref, doc)
        db.execute("INSERT INTO sigs (doc, hash, signer, sig) VALUES (?, ?, ?, ?)", (ref.id, *sig))


def build(path: Path, posts: int, authors: int) -> str:
    """A home whose own identity owns a community of `posts` posts; returns the community id."""
    home = Home(path)
    home.create_identity(None)
    c = cm.create(home, "Bench")
    rng = random.Random(posts)
    people = [Identity.generate() for _ in range(authors)]
    ids: list[str] = []
    t0 = 1_700_000_000_000
    per = posts // authors
    for n, me in enumerate(people):
        doc = Document(actor_id=me.public_key)
        with doc.transaction() as tx:
            table = tx.put_object(ROOT, "posts", ObjType.Map)
            reactions = tx.put_object(ROOT, "reactions", ObjType.Map)
            for i in range(per):
                local = os.urandom(8).hex()
                p = tx.put_object(table, local, ObjType.Map)
                tx.put(p, "text", ScalarType.Str, text(rng))
                tx.put(p, "ts", ScalarType.Int, t0 + (i * authors + n) * 1000)
                if ids and rng.random() < 0.2:
                    tx.put(p, "parent", ScalarType.Str, rng.choice(ids[-500:]))
                if ids and rng.random() < 0.05:
                    r = tx.put_object(reactions, rng.choice(ids[-500:]), ObjType.Map)
                    tx.put(r, rng.choice(["👍", "🎉", "🌱"]), ScalarType.Int, t0)
                ids.append(me.public_key[:4].hex() + local)
        _store_doc(home, DocRef(c.id, FEED, me.public_key), me, doc)
        prof = Document(actor_id=me.public_key)
        with prof.transaction() as tx:
            tx.put(ROOT, "name", ScalarType.Str, f"Author {n}")
            tx.put(ROOT, "age", ScalarType.Str, me.age_recipient)
        _store_doc(home, DocRef(c.id, PROFILE, me.public_key), me, prof)
        if n < 5:
            chat = Document(actor_id=me.public_key)
            with chat.transaction() as tx:
                table = tx.put_object(ROOT, "messages", ObjType.Map)
                for i in range(max(1, per // 10)):
                    m = tx.put_object(table, os.urandom(8).hex(), ObjType.Map)
                    tx.put(m, "room", ScalarType.Str, "general")
                    tx.put(m, "text", ScalarType.Str, text(rng))
                    tx.put(m, "ts", ScalarType.Int, t0 + i * 1000)
            _store_doc(home, DocRef(c.id, CHAT, me.public_key), me, chat)
    cm.hide(home, c, ids[len(ids) // 2])
    cm.ban(home, c, people[-1].public_key)
    home.close()
    return c.hex


def cached_home(posts: int, authors: int) -> tuple[Path, str]:
    where = CACHE / f"{posts}x{authors}"
    done = where / "community"
    if not done.exists():
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir(parents=True)
        done.write_text(build(where / "home", posts, authors))
    return where / "home", done.read_text()


def run(home: Path, args: list[str], old: Path | None = None) -> tuple[float, int, float]:
    """One whole `p2p` command in its own process: (wall seconds, its own peak RSS in MiB
    (`bench/measure.py`: not this process's size when it forked),
    its CPU seconds: user + system, less distorted than wall time on a loaded machine)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    env["P2P_HOME"] = str(home)
    if old is not None:
        env["PYTHONPATH"] = str(old)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        got = measure.run(
            [sys.executable, "-m", "p2p.cli.main", *args],
            stdout=out,
            stderr=err,
            env=env,
            cwd=str(old) if old is not None else None,
        )
        if got.returncode != 0:
            err.seek(0)
            raise SystemExit(f"p2p {' '.join(args)} failed: {err.read().decode()[-2000:]}")
        return got.seconds, got.rss_kib // 1024, got.cpu


def median(home: Path, args: list[str]) -> tuple[float, int, float]:
    """`run`, the middle of three by wall time: a single 0.2-0.5 s run on a shared
    machine is off by up to half (the first command after a pause most of all)."""
    return sorted((run(home, args) for _ in range(3)), key=lambda r: r[0])[1]


def old_code() -> Path | None:
    """The package as it stood at the start of the work, unpacked from git (None if absent)."""
    where = CACHE / f"code-{OLD}"
    if not (where / "p2p").exists():
        where.mkdir(parents=True, exist_ok=True)
        repo = Path(__file__).resolve().parents[1]
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", OLD, "p2p"], capture_output=True, check=False
        )
        if archive.returncode != 0:
            return None
        subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    return measure.compiled(where)


def sizes(home: Path) -> tuple[int, int]:
    """The store's bytes with its indexes and without them (a vacuumed copy of each)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "p2p.db"
        src = sqlite3.connect(home / "p2p.db")
        dst = sqlite3.connect(copy)
        src.backup(dst)
        src.close()
        dst.execute("VACUUM")
        with_ix = copy.stat().st_size
        for (name,) in dst.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'ix\\_%' ESCAPE '\\'"
            " AND name NOT LIKE '%\\_fts\\_%' ESCAPE '\\'"
        ).fetchall():
            dst.execute(f"DROP TABLE IF EXISTS {name}")
        dst.execute("VACUUM")
        dst.close()
        return with_ix, copy.stat().st_size


def row(label: str, value: str, note: str = "") -> None:
    print(f"{label:34} {value:>30}  {note}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000,300000")
    ap.add_argument("--authors", type=int, default=50)
    ap.add_argument("--no-old", action="store_true", help="skip the 878248f comparison")
    a = ap.parse_args()
    old = None if a.no_old else old_code()
    print(f"p2p views benchmark ({a.authors} authors; every figure a whole process)")
    print(f"{'command':34} {'wall, cpu, peak RSS':>30}")
    figures = {}
    for posts in [int(s) for s in a.sizes.split(",")]:
        t = time.perf_counter()
        home, cid = cached_home(posts, a.authors)
        print(f"\n== {posts} posts (home ready in {time.perf_counter() - t:.1f} s)")
        f = {}
        f["feed"] = median(home, ["feed", cid])
        f["feed_json_all"] = run(home, ["feed", cid, "--json", "--last", "0"])
        f["search"] = median(home, ["search", cid, "river", "bridge"])
        f["post"] = median(home, ["post", cid, f"bench post {time.time()}"])
        f["chat"] = median(home, ["chat", "send", cid, f"bench chat {time.time()}"])
        f["rebuild"] = run(home, ["index", "rebuild", cid])
        f["feed_after_rebuild"] = run(home, ["feed", cid])
        if old is not None:
            f["old_feed"] = run(home, ["feed", cid], old)
        with_ix, without = sizes(home)
        for key, label in [
            ("feed", "p2p feed ID (30 threads)"),
            ("feed_json_all", "p2p feed ID --json --last 0"),
            ("search", "p2p search ID river bridge"),
            ("post", "p2p post ID TEXT"),
            ("chat", "p2p chat send ID TEXT"),
            ("rebuild", "p2p index rebuild ID"),
            ("old_feed", f"p2p feed ID at {OLD} (before)"),
        ]:
            if key in f:
                secs, mib, cpu = f[key]
                note = ""
                if key == "old_feed":
                    fast, small = secs / f["feed"][0], mib / f["feed"][1]
                    note = f"before/now: {fast:.1f}x the time, {small:.1f}x the memory"
                elif key == "feed":
                    note = "target < 0.5 s, < 120 MiB"
                row(label, f"{secs:6.2f} s {cpu:6.2f} cpu {mib:5d} MiB", note)
        row("store size with indexes", f"{with_ix / 2**20:10.1f} MiB")
        row(
            "store size without indexes",
            f"{without / 2**20:10.1f} MiB",
            f"indexes add {100 * (with_ix - without) / max(without, 1):.0f}%",
        )
        figures[posts] = {k: list(v) for k, v in f.items()} | {"bytes": [with_ix, without]}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
