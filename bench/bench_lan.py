"""LAN sync benchmark: a full sync, a small delta, and mDNS discovery latency.

    python -m bench.bench_lan [--posts 10000] [--authors 20]

Two homes on 127.0.0.1: one holds POSTS posts the other lacks. Measures the
wall time of `p2p sync --peer` (the real CLI, a real `p2p serve`) until both
hold the same content, the bytes on the wire against the bundle file of the
same content, then the same after 100 new posts (only the delta should cross).
Discovery latency (announce finished -> resolved by a browser) is measured in
two network namespaces when run as root. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_bundle import build_store
from p2p import content, invites
from p2p.bundle import export as ex
from p2p.exchange import inventory
from p2p.home import Home

P2P = [sys.executable, "-m", "p2p.cli.main"]


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "P2P_HOME": str(home)}
    return subprocess.run(
        [*P2P, *args], capture_output=True, text=True, env=env, check=True, timeout=600
    )


def timed_sync(server_home: Path, client_home: Path) -> tuple[float, dict]:
    env = {**os.environ, "P2P_HOME": str(server_home)}
    server = subprocess.Popen(
        [*P2P, "serve", "--host", "127.0.0.1", "--port", "0", "--no-mdns"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = server.stdout.readline()
        port = line.split("127.0.0.1:")[1].split()[0]
        t = time.perf_counter()
        out = cli(client_home, "sync", "--peer", f"127.0.0.1:{port}", "--json")
        elapsed = time.perf_counter() - t
        return elapsed, json.loads(out.stdout)[0]
    finally:
        server.send_signal(2)
        server.communicate(timeout=20)


def discovery_latency() -> str:
    if os.geteuid() != 0:
        return "skipped (needs root for network namespaces)"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests import nslab

    if nslab.skip_reason():
        return f"skipped ({nslab.skip_reason()})"
    code = r"""
import asyncio, sys, time
from p2p.lan import discovery
async def main():
    if sys.argv[1] == "a":
        a = discovery.Announcer(sys.argv[2], 7420, rotate_every=None)
        await a.start()
        print("up", flush=True)
        await asyncio.sleep(30)
    else:
        t = time.monotonic()
        from zeroconf import IPVersion, ServiceStateChange
        from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf
        azc = AsyncZeroconf(interfaces=[sys.argv[2]], ip_version=IPVersion.V4Only)
        done = asyncio.get_running_loop().create_future()
        async def resolve(name):
            info = AsyncServiceInfo(discovery.SERVICE_TYPE, name)
            if await info.async_request(azc.zeroconf, 3000) and not done.done():
                done.set_result(time.monotonic() - t)
        def on(zeroconf, service_type, name, state_change):
            if state_change is ServiceStateChange.Added:
                asyncio.ensure_future(resolve(name))
        b = AsyncServiceBrowser(azc.zeroconf, [discovery.SERVICE_TYPE], handlers=[on])
        print(await asyncio.wait_for(done, 10))
        await b.async_cancel()
        await azc.async_close()
asyncio.run(main())
"""
    samples = []
    for _ in range(3):
        lab = nslab.Lab()
        try:
            (na, aa), (nb, ab) = lab.host(), lab.host()
            ann = lab.popen(
                na,
                [sys.executable, "-c", code, "a", aa],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # it is interrupted at the end, on purpose
                text=True,
            )
            ann.stdout.readline()
            out = lab.run(
                nb,
                [sys.executable, "-c", code, "b", ab],
                timeout=30,
                capture_output=True,
                text=True,
            )
            samples.append(float(out.stdout.strip()))
        finally:
            lab.close()
    return " / ".join(f"{s * 1000:.0f} ms" for s in samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=10_000)
    ap.add_argument("--authors", type=int, default=20)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        owner, c, _ = build_store(tmp, args.posts, args.authors)
        invite = invites.write(owner, c)
        with ex.scratch_dir(owner) as s:
            built = ex.build(owner, ex.domains([c])[0], Path(s))
            bundle_size = built.size
        owner.close()
        client = tmp / "client"
        cli(client, "init", "--no-passphrase", "--name", "Client")
        (tmp / "invite").write_bytes(invite)
        cli(client, "community", "join", str(tmp / "invite"))

        full_s, full = timed_sync(tmp / "owner", client)
        a, b = Home(tmp / "owner"), Home(client)
        same = inventory(a, [c.id]) == inventory(b, [c.id])
        for i in range(100):
            content.post(a, c, f"new post {i} after the first sync")
        a.close()
        b.close()
        delta_s, delta = timed_sync(tmp / "owner", client)
        a, b = Home(tmp / "owner"), Home(client)
        same_after = inventory(a, [c.id]) == inventory(b, [c.id])
        # again, now into a feed both sides hold: the side that is behind must
        # not send its (older) copy back
        for i in range(100):
            content.post(a, c, f"second round {i}")
        a.close()
        b.close()
        again_s, again = timed_sync(tmp / "owner", client)
        wire = full["bytes_received"] + full["bytes_sent"]
        rows += [
            ("posts / authors", f"{args.posts} / {args.authors}", ""),
            (
                "full sync (p2p sync --peer, wall)",
                f"{full_s:.2f} s",
                f"converged: {same}; {full['received']} documents received",
            ),
            (
                "bytes on the wire, full",
                f"{wire / 1e6:.2f} MB",
                f"{wire / bundle_size:.2f}x the bundle file ({bundle_size / 1e6:.2f} MB)",
            ),
            (
                "delta sync after 100 posts",
                f"{delta_s:.2f} s",
                f"converged: {same_after}; {delta['applied']} changes applied",
            ),
            (
                "bytes on the wire, delta",
                f"{(delta['bytes_received'] + delta['bytes_sent']) / 1e3:.1f} kB",
                f"{(delta['bytes_received'] + delta['bytes_sent']) / wire:.4f}x the full sync",
            ),
            (
                "again, 100 posts into a feed both hold",
                f"{again_s:.2f} s",
                f"{(again['bytes_received'] + again['bytes_sent']) / 1e3:.1f} kB on the wire; "
                f"client sent {again['sent']} documents, received {again['received']}",
            ),
            ("discovery latency (namespaces)", discovery_latency(), "announce done -> resolved"),
        ]
    width = max(len(r[0]) for r in rows)
    print("p2p LAN benchmark (loopback; CLI processes include ~0.5 s of interpreter start-up)")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>26}  {note}")


if __name__ == "__main__":
    main()
