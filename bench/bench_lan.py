"""LAN sync benchmark: full and delta syncs, two `serve`s converging on their own,
and the server under hostile load.

    python -m bench.bench_lan [--posts 10000] [--authors 20] [--hostile 200]

Every figure is a whole `p2p` command (interpreter start-up included):

- full sync: `p2p sync --peer` (real CLI, real `p2p serve`) of POSTS posts, until
  both hold the same content; bytes on the wire against the bundle file of the
  same content; then the same after 100 new posts (only the delta crosses);
- hostile load: HOSTILE clients from 25+ loopback addresses keep connecting to
  one `p2p serve`, half saying nothing (held until the server drops them), half
  completing the Noise handshake and sending a full-size `hello` (1,024 proofs
  for communities nobody has), again and again. Measured: the server's peak
  resident memory (VmHWM) while they run, against its memory idle; and an
  honest `p2p sync --peer` of the same content under that load, as a ratio to
  the same sync unloaded (a fresh copy of the same client each time);
- (root only, network namespaces) two `p2p serve` processes with no --host and
  nobody typing `sync`: time from starting them to both holding all POSTS posts;
  and mDNS discovery latency.

Prints a table; asserts nothing but that the steps succeed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgpack

from bench.bench_bundle import build_store
from p2p import content, invites
from p2p.bundle import export as ex
from p2p.exchange import inventory
from p2p.home import Home
from p2p.lan import channel as ch

P2P = [sys.executable, "-m", "p2p.cli.main"]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    env["P2P_HOME"] = str(home)
    return env


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([*P2P, *args], capture_output=True, text=True, env=_env(home), timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"p2p {' '.join(args)} failed: {out.stdout[-1500:]} {out.stderr[-1500:]}")
    return out


def start_server(home: Path) -> tuple[subprocess.Popen, int]:
    server = subprocess.Popen(
        [*P2P, "serve", "--host", "127.0.0.1", "--port", "0", "--no-mdns", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(home),
    )
    event = json.loads(server.stdout.readline())
    threading.Thread(target=server.stdout.read, daemon=True).start()  # keep the pipe drained
    return server, int(event["port"])


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(2)
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def timed_sync(client: Path, port: int) -> tuple[float, dict]:
    t = time.perf_counter()
    out = cli(client, "sync", "--peer", f"127.0.0.1:{port}", "--json")
    return time.perf_counter() - t, json.loads(out.stdout)[0]


def memory(pid: int, field: str) -> int:
    """VmRSS / VmHWM of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


class Hostile:
    """`n` hostile clients in a thread of their own (see the module docstring)."""

    def __init__(self, port: int, n: int) -> None:
        self.port, self.n = port, n
        self.open = 0
        self.connections = 0
        self.hellos = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> Hostile:
        self._thread.start()
        end = time.monotonic() + 30
        while self.connections < self.n and time.monotonic() < end:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _one(self, i: int) -> None:
        local = f"127.0.{1 + (i // 8) // 250}.{2 + (i // 8) % 250}"  # 8 per address
        while not self._stop.is_set():
            try:
                r, w = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(local, 0))
            except OSError:
                await asyncio.sleep(0.05)
                continue
            self.open += 1
            self.connections += 1
            try:
                if i % 2 == 0:
                    await asyncio.wait_for(r.read(), 1.0 if self._stop.is_set() else 30)
                else:
                    chan = await ch.handshake(r, w, True, 10)
                    proofs = sorted(os.urandom(32) for _ in range(1024))
                    await chan.send(msgpack.packb({"t": "hello", "v": 2, "proofs": proofs}))
                    self.hellos += 1
                    await asyncio.wait_for(r.read(), 30)
            except Exception:  # noqa: BLE001 - any end is fine here
                pass
            finally:
                self.open -= 1
                w.close()

    async def _main(self) -> None:
        tasks = [asyncio.create_task(self._one(i)) for i in range(self.n)]
        while not self._stop.is_set():
            await asyncio.sleep(0.1)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def two_serves_converge(owner: Path, client: Path, community: bytes) -> str:
    """Two `p2p serve` in network namespaces, no --host, nobody typing sync."""
    if os.geteuid() != 0:
        return "skipped (needs root for network namespaces)"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests import nslab

    if nslab.skip_reason():
        return f"skipped ({nslab.skip_reason()})"
    nslab.sweep()
    lab = nslab.Lab(subnet="10.78.0")
    try:
        (na, _), (nb, _) = lab.host(), lab.host()
        t = time.perf_counter()
        for ns, home in ((na, owner), (nb, client)):
            lab.popen(
                ns,
                [*P2P, "serve", "--json"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=_env(home),
            )
        a, b = Home(owner), Home(client)
        try:
            want = inventory(a, [community])
            while time.perf_counter() - t < 600:
                if inventory(b, [community]) == want:
                    return f"{time.perf_counter() - t:.2f} s"
                time.sleep(0.2)
            return "did not converge in 600 s"
        finally:
            a.close()
            b.close()
    finally:
        lab.close()


def discovery_latency() -> str:
    if os.geteuid() != 0:
        return "skipped (needs root for network namespaces)"
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
        peers = []
        while not peers and time.monotonic() - t < 10:
            peers = await discovery.browse(sys.argv[2], 0.3)
        print(time.monotonic() - t)
asyncio.run(main())
"""
    samples = []
    for _ in range(3):
        lab = nslab.Lab(subnet="10.79.0")
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
                nb, [sys.executable, "-c", code, "b", ab], 30, capture_output=True, text=True
            )
            samples.append(float(out.stdout.strip()))
        finally:
            lab.close()
    return " / ".join(f"{s * 1000:.0f} ms" for s in samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=10_000)
    ap.add_argument("--authors", type=int, default=20)
    ap.add_argument("--hostile", type=int, default=200)
    ap.add_argument("--no-netns", action="store_true", help="skip the namespace parts")
    args = ap.parse_args()
    rows = []
    figures: dict[str, float | str] = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        owner_home, c, _, _ = build_store(tmp, args.posts, args.authors)
        invite = invites.write(owner_home, c)
        with ex.scratch_dir(owner_home) as s:
            bundle_size = ex.build(owner_home, ex.domains([c])[0], Path(s)).size
        owner_home.close()
        owner = tmp / "owner"
        fresh = tmp / "fresh"
        cli(fresh, "init", "--no-passphrase", "--name", "Client")
        (tmp / "invite").write_bytes(invite)
        cli(fresh, "community", "join", str(tmp / "invite"))
        copies = {}
        for name in ("client", "loaded", "unloaded", "unloaded2", "auto"):
            copies[name] = tmp / name
            shutil.copytree(fresh, copies[name])

        server, port = start_server(owner)
        try:
            idle = memory(server.pid, "VmRSS")
            full_s, full = timed_sync(copies["unloaded"], port)
            with Hostile(port, args.hostile) as load:
                time.sleep(1.0)
                loaded_s, loaded = timed_sync(copies["loaded"], port)
                time.sleep(1.0)
                peak = memory(server.pid, "VmHWM")
                opened = load.connections
                hellos = load.hellos
            again_s, _ = timed_sync(copies["unloaded2"], port)  # load varies: unloaded twice
        finally:
            stop(server)
        base_s = (full_s + again_s) / 2
        a, b = Home(owner), Home(copies["loaded"])
        same_loaded = inventory(a, [c.id]) == inventory(b, [c.id])
        a.close()
        b.close()

        server, port = start_server(owner)
        try:
            first_s, first = timed_sync(copies["client"], port)
        finally:
            stop(server)
        a = Home(owner)
        for i in range(100):
            content.post(a, c, f"new post {i} after the first sync")
        a.close()
        server, port = start_server(owner)
        try:
            delta_s, delta = timed_sync(copies["client"], port)
        finally:
            stop(server)
        a, b = Home(owner), Home(copies["client"])
        same_after = inventory(a, [c.id]) == inventory(b, [c.id])
        a.close()
        b.close()
        auto = (
            "skipped (--no-netns)"
            if args.no_netns
            else two_serves_converge(owner, copies["auto"], c.id)
        )
        latency = "skipped (--no-netns)" if args.no_netns else discovery_latency()

        wire = full["bytes_received"] + full["bytes_sent"]
        dwire = delta["bytes_received"] + delta["bytes_sent"]
        figures = {
            "full_s": full_s,
            "loaded_s": loaded_s,
            "ratio": loaded_s / base_s,
            "idle_rss": idle,
            "peak_rss": peak,
            "auto": auto,
        }
        rows += [
            ("posts / authors", f"{args.posts} / {args.authors}", ""),
            (
                "full sync (p2p sync --peer, wall)",
                f"{full_s:.2f} s",
                f"{full['received']} documents received; again on a fresh copy after the "
                f"hostile run: {again_s:.2f} s",
            ),
            (
                "bytes on the wire, full",
                f"{wire / 1e6:.2f} MB",
                f"{wire / bundle_size:.2f}x the bundle file ({bundle_size / 1e6:.2f} MB)",
            ),
            (
                "delta sync after 100 posts",
                f"{delta_s:.2f} s",
                f"converged: {same_after}; {delta['applied']} changes applied "
                f"(first sync of that copy {first_s:.2f} s, {first['received']} documents)",
            ),
            ("bytes on the wire, delta", f"{dwire / 1e3:.1f} kB", f"{dwire / wire:.4f}x the full"),
            (
                f"same full sync, {args.hostile} hostile clients",
                f"{loaded_s:.2f} s",
                f"{loaded_s / base_s:.2f}x the mean unloaded; converged: {same_loaded}; "
                f"{opened} hostile connections, {hellos} full-size hellos",
            ),
            (
                "server memory idle -> peak under load",
                f"{idle / 1e6:.0f} -> {peak / 1e6:.0f} MB",
                "VmRSS before, VmHWM after (the peak includes the honest syncs)",
            ),
            ("two serves, no sync typed, converge", auto, "from starting both processes"),
            ("discovery latency (namespaces)", latency, "announce done -> resolved"),
        ]
    width = max(len(r[0]) for r in rows)
    print("p2p LAN benchmark (loopback; CLI processes include ~0.5 s of interpreter start-up)")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>26}  {note}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
