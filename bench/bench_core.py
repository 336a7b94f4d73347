"""Core benchmark: creating, rendering and accepting signed posts.

    python -m bench.bench_core [--posts 10000] [--authors 20]

POSTS posts by AUTHORS authors in one community, each written through the real
path (`content.post`: Automerge transaction, Ed25519 signature, SQLite write),
each author in their own home. Then, in one home that has everything: render
the threaded feed. Then accept everything into a fresh store through the
acceptance path, and compare that rate with a raw Ed25519 verify loop over
the same number of messages, measured in the same run. Prints a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from bench.bench_bundle import raw_verify_rate
from p2p import community as cm
from p2p import content, exchange, feed, invites
from p2p.accept import from_record
from p2p.home import Home


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=10_000)
    ap.add_argument("--authors", type=int, default=20)
    args = ap.parse_args()
    per = args.posts // args.authors
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        owner = Home(tmp / "owner")
        owner.create_identity(None)
        c = cm.create(owner, "Bench")
        invite = invites.write(owner, c)
        homes = []
        for i in range(args.authors):
            h = Home(tmp / f"author{i}")
            h.create_identity(None)
            cm.set_profile(h, f"Author {i}", None)
            invites.join(h, invite)
            homes.append((h, cm.resolve(h, c.hex)))

        times: list[float] = []
        last: list[float] = []
        t0 = time.perf_counter()
        for j in range(per):  # round-robin, as a real community grows
            for h, hc in homes:
                s = time.perf_counter()
                content.post(h, hc, f"post {j} from someone: market news and road reports")
                dt = time.perf_counter() - s
                times.append(dt)
                if j >= per - 5:
                    last.append(dt)
        create_total = time.perf_counter() - t0

        t0 = time.perf_counter()
        records = [r for h, _ in homes for r in exchange.records_for(h, None, [c.id])]
        build_s = time.perf_counter() - t0
        nsigs = sum(len(r["sigs"]) for r in records)
        nchanges = 0

        fresh = Home(tmp / "fresh")
        fresh.create_identity(None)
        invites.join(fresh, invite)
        t0 = time.perf_counter()
        incoming = [from_record(r) for r in records]
        nchanges = sum(len(i.changes) for i in incoming)
        report = fresh.acceptor().accept(incoming)
        accept_s = time.perf_counter() - t0
        assert not report.rejected

        fc = cm.resolve(fresh, c.hex)
        fresh.docs.forget()
        t0 = time.perf_counter()
        threaded = feed.thread(fresh, fc)
        render_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        feed.thread(fresh, fc)
        render_warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        flat = feed.all_posts(fresh, fc)
        flat_s = time.perf_counter() - t0

        raw = raw_verify_rate(nchanges)
        accept_rate = nchanges / accept_s
        rows = [
            ("posts / authors", f"{args.posts} / {args.authors}", ""),
            ("create: total", f"{create_total:.1f} s", "content.post: transaction + sign + store"),
            ("create: mean per post", f"{statistics.mean(times) * 1000:.2f} ms", "target < 5 ms"),
            ("create: p99 per post", f"{sorted(times)[int(len(times) * 0.99)] * 1000:.2f} ms", ""),
            (
                "create: per post at full size",
                f"{statistics.mean(last) * 1000:.2f} ms",
                f"each feed holding ~{per} posts",
            ),
            (
                "render thread, cold / warm",
                f"{render_cold:.2f} / {render_warm:.2f} s",
                f"{len(flat)} posts, {len(threaded)} threads; target < 1 s",
            ),
            ("render flat list (warm)", f"{flat_s:.2f} s", ""),
            (
                "build records for export",
                f"{build_s:.2f} s",
                f"{len(records)} records, {nsigs} signatures for {nchanges} changes",
            ),
            ("accept into fresh store", f"{accept_s:.2f} s", f"{accept_rate:,.0f} changes/s"),
            ("raw Ed25519 verify loop", f"{raw:,.0f} /s", f"{nchanges} messages, same run"),
            ("accept rate / raw verify rate", f"{accept_rate / raw:.1f}x", "target > 1"),
        ]
        for h, _ in homes:
            h.close()
        owner.close()
        fresh.close()
    print(
        f"p2p core benchmark — {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>18}  {note}")


if __name__ == "__main__":
    main()
