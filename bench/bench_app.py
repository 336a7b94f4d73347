"""App benchmark: what the browser waits for, as a community's history grows.

    python -m bench.bench_app [--sizes 1000,10000] [--authors 50]

For each size, the cached home of bench_views (that many posts by AUTHORS
authors) gets a real `p2p app --no-browser` process, driven over HTTP on
127.0.0.1 (httpx, no browser: the server's share of the wait). Measured:

- start-up: from launching the process until it prints its address, and the
  first page (the token exchanged for the cookie, then the communities list);
- the feed page (the newest 50 threads), first and warm (median of 5), next
  to `p2p feed ID` (the newest 30 threads) as a whole process in the same run,
  and the ratio;
- a search page, and the members page;
- live: an SSE stream is open, `p2p post ID TEXT` runs in another process;
  the time from that process's exit to the `change` event reaching the page
  (the app polls the store's data_version every 0.4 s: the floor).

Prints a table; asserts nothing but that each step succeeds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from bench.bench_views import cached_home, run


def start_app(home: Path) -> tuple[subprocess.Popen, str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "p2p.cli.main", "--home", str(home), "app", "--no-browser",
         "--lan-host", "127.0.0.1", "--lan-port", "0", "--no-mdns"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("p2p app: "):
        proc.kill()
        raise SystemExit(f"the app did not start: {line}{proc.stdout.read()[-2000:]}")
    return proc, line.split()[2], time.perf_counter() - t


def timed(client: httpx.Client, path: str) -> tuple[float, int]:
    t = time.perf_counter()
    r = client.get(path)
    r.raise_for_status()
    return time.perf_counter() - t, len(r.content)


def live_latency(client: httpx.Client, home: Path, cid: str) -> tuple[float, float]:
    """(seconds from a CLI post's start to the change event on an open stream,
    that post command's own wall time)."""
    got = threading.Event()
    arrived: list[float] = []
    opened = threading.Event()

    def listen() -> None:
        with client.stream("GET", "/events", timeout=60) as r:
            opened.set()
            for line in r.iter_lines():
                if line.startswith("event: change"):
                    arrived.append(time.perf_counter())
                    got.set()
                    return

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    opened.wait(30)
    time.sleep(1.0)  # the stream's first poll has run
    t = time.perf_counter()
    wall, _rss, _cpu = run(home, ["post", cid, "live latency probe"])
    if not got.wait(30):
        raise SystemExit("no change event arrived")
    return arrived[0] - t, wall


def row(label: str, value: str, note: str = "") -> None:
    print(f"{label:34} {value:>22}  {note}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--authors", type=int, default=50)
    a = ap.parse_args()
    print(f"p2p app benchmark ({a.authors} authors; server side over HTTP on 127.0.0.1)")
    print(f"{'step':34} {'seconds':>22}")
    figures: dict[str, dict] = {}
    for posts in [int(s) for s in a.sizes.split(",")]:
        home, cid = cached_home(posts, a.authors)
        print(f"\n== {posts} posts")
        proc, url, startup = start_app(home)
        try:
            base = url.split("/?")[0]
            with httpx.Client(base_url=base, headers={"origin": base}, timeout=120) as client:
                t = time.perf_counter()
                client.get(url, follow_redirects=True).raise_for_status()
                first_page = time.perf_counter() - t
                row("start-up (address printed)", f"{startup:.3f}")
                row("first page (token, cookie, list)", f"{first_page:.3f}")
                cold, size = timed(client, f"/c/{cid}")
                warm = statistics.median(timed(client, f"/c/{cid}")[0] for _ in range(5))
                cli_wall, _rss, _cpu = run(home, ["feed", cid])
                row("feed page, first", f"{cold:.3f}", f"{size // 1024} KiB of HTML")
                row("feed page, warm (median of 5)", f"{warm:.3f}")
                row("p2p feed ID (whole process)", f"{cli_wall:.3f}")
                row("ratio app warm / CLI", f"{warm / cli_wall:.2f}")
                search, _n = timed(client, f"/c/{cid}?q=river")
                members, _n = timed(client, f"/c/{cid}/manage")
                row("search page", f"{search:.3f}")
                row("members page", f"{members:.3f}")
                latency, post_wall = live_latency(client, home, cid)
                row("p2p post ID TEXT (whole process)", f"{post_wall:.3f}")
                row(
                    "live: CLI post start -> event",
                    f"{latency:.3f}",
                    "commit is before exit; polling every 0.4 s",
                )
                figures[str(posts)] = {
                    "startup": startup,
                    "first_page": first_page,
                    "feed_cold": cold,
                    "feed_warm": warm,
                    "cli_feed": cli_wall,
                    "search": search,
                    "members": members,
                    "live": latency,
                    "cli_post": post_wall,
                }
        finally:
            proc.send_signal(2)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
