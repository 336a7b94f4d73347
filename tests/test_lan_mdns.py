"""mDNS discovery and sync between homes in separate network namespaces.

Each home runs the real `p2p serve` inside its own namespace (10.77.0.x on a
private bridge); nothing binds to the machine's interfaces and no multicast
leaves the lab. Skips with the reason where namespaces are not allowed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import nslab

pytestmark = [pytest.mark.timeout(120), pytest.mark.netns]

P2P = [sys.executable, "-m", "p2p.cli.main"]


@pytest.fixture
def lab():
    reason = nslab.skip_reason()
    if reason:
        pytest.skip(reason)
    nslab.sweep()
    lab = nslab.Lab()
    try:
        yield lab
    finally:
        lab.close()


def p2p(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "P2P_HOME": str(home)}
    res = subprocess.run([*P2P, *args], capture_output=True, text=True, env=env, timeout=60)
    if check and res.returncode != 0:
        raise AssertionError(f"p2p {' '.join(args)} failed: {res.stderr}")
    return res


def in_ns(lab: nslab.Lab, ns: str, home: Path, *args: str, timeout: float = 60):
    env = {**os.environ, "P2P_HOME": str(home)}
    return lab.run(ns, [*P2P, *args], timeout=timeout, capture_output=True, text=True, env=env)


def serve(lab: nslab.Lab, ns: str, addr: str, home: Path) -> subprocess.Popen:
    env = {**os.environ, "P2P_HOME": str(home)}
    proc = lab.popen(
        ns,
        [*P2P, "serve", "--host", addr, "--port", "7420"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()
    assert "Serving on" in line, line + proc.stderr.read()
    return proc


def test_announcement_reveals_nothing_and_rotates(lab, tmp_path: Path) -> None:
    (ns_a, addr_a), (ns_b, addr_b) = lab.host(), lab.host()
    code = r"""
import asyncio, json, sys
from p2p.lan import discovery
async def wait_line():
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
async def main():
    mode, addr = sys.argv[1], sys.argv[2]
    if mode == "announce":
        a = discovery.Announcer(addr, 7420, rotate_every=None)
        await a.start()
        print(json.dumps({"token": a.token, "name": a.name}), flush=True)
        await wait_line()
        await a.rotate()
        print(json.dumps({"token": a.token, "name": a.name}), flush=True)
        await wait_line()
        await a.close()
        print("{}", flush=True)
        await wait_line()
    else:
        peers = await discovery.browse(addr, float(sys.argv[3]))
        print(json.dumps([p.__dict__ for p in peers]))
asyncio.run(main())
"""
    home = tmp_path / "a"
    p2p(home, "init", "--no-passphrase", "--name", "Alice")
    me = json.loads(p2p(home, "whoami", "--json").stdout)
    ann = lab.popen(
        ns_a,
        [sys.executable, "-c", code, "announce", addr_a],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    first = json.loads(ann.stdout.readline())

    def browse() -> list[dict]:
        out = lab.run(
            ns_b,
            [sys.executable, "-c", code, "browse", addr_b, "6"],
            timeout=30,
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout)

    t = time.monotonic()
    seen = browse()
    assert [(p["host"], p["port"], p["token"]) for p in seen] == [(addr_a, 7420, first["token"])]
    text = json.dumps(seen)
    for secret in (me["public_key"], me["fingerprint"], "Alice", os.uname().nodename):
        assert secret not in text
    ann.stdin.write("\n")
    ann.stdin.flush()
    second = json.loads(ann.stdout.readline())
    assert second["token"] != first["token"] and second["name"] != first["name"]
    assert [p["token"] for p in browse()] == [second["token"]]
    ann.stdin.write("\n")
    ann.stdin.flush()
    ann.stdout.readline()
    assert browse() == []  # withdrawn
    ann.stdin.write("\n")
    ann.stdin.flush()
    assert time.monotonic() - t < 60


def test_three_homes_find_each_other_and_converge(lab, tmp_path: Path) -> None:
    homes = [tmp_path / n for n in ("alice", "bob", "carol")]
    for home, name in zip(homes, ("Alice", "Bob", "Carol"), strict=True):
        p2p(home, "init", "--no-passphrase", "--name", name)
    alice, bob, carol = homes
    village = json.loads(p2p(alice, "community", "create", "Village", "--json").stdout)["id"]
    secret = json.loads(p2p(alice, "community", "create", "Secret", "--private", "--json").stdout)[
        "id"
    ]
    p2p(alice, "community", "invite", village, "--out", str(tmp_path / "v.inv"))
    p2p(alice, "community", "invite", secret, "--out", str(tmp_path / "s.inv"), "--no-passphrase")
    for h in (bob, carol):
        p2p(h, "community", "join", str(tmp_path / "v.inv"))
    p2p(bob, "community", "join", str(tmp_path / "s.inv"))  # carol is not a member
    for h, text in ((alice, "from alice"), (bob, "from bob"), (carol, "from carol")):
        p2p(h, "post", village, text)
    p2p(alice, "post", secret, "private words")

    hosts = [lab.host() for _ in homes]
    servers = [serve(lab, ns, addr, home) for (ns, addr), home in zip(hosts, homes, strict=True)]
    # each home in turn browses its network, syncs with whoever it finds, and exits;
    # one round converges because every session relays what earlier ones brought
    for (ns, addr), home in zip(hosts, homes, strict=True):
        res = in_ns(lab, ns, home, "sync", "--interface", addr, "--timeout", "4", "--json")
        assert res.returncode == 0, res.stderr
        found = json.loads(res.stdout)
        assert sorted(f["ok"] for f in found) == [True, True], found  # both others, not itself
    feeds = [json.loads(p2p(h, "feed", village, "--json").stdout) for h in homes]
    texts = [sorted(p["text"] for p in f) for f in feeds]
    assert texts[0] == ["from alice", "from bob", "from carol"]
    assert texts[0] == texts[1] == texts[2]
    assert feeds[0] == feeds[1] == feeds[2]
    assert "private words" in p2p(bob, "feed", secret).stdout
    # carol never received anything of the private community
    assert p2p(carol, "feed", secret, check=False).returncode == 1
    listed = json.loads(p2p(carol, "community", "list", "--json").stdout)
    assert [c["id"] for c in listed] == [village]
    # Ctrl-C ends a server cleanly and withdraws its announcement
    servers[0].send_signal(2)
    out, _err = servers[0].communicate(timeout=15)
    assert servers[0].returncode == 0 and "announcement withdrawn" in out
    ns, addr = hosts[1]
    res = in_ns(lab, ns, bob, "peers", "--interface", addr, "--timeout", "3", "--json")
    visible = json.loads(res.stdout)["visible"]
    assert [v["host"] for v in visible] == [hosts[2][1]]  # carol only: alice left, bob is self


def serve_anywhere(lab: nslab.Lab, ns: str, home: Path, *extra: str) -> subprocess.Popen:
    """`p2p serve --json` with no --host: it must find the namespace's interface itself."""
    env = {**os.environ, "P2P_HOME": str(home)}
    proc = lab.popen(
        ns,
        [*P2P, "serve", "--json", "--port", "7420", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return proc


def first_event(proc: subprocess.Popen, kind: str) -> dict:
    while line := proc.stdout.readline():
        event = json.loads(line)
        if event["event"] == kind:
            return event
    raise AssertionError(f"no {kind} event: " + proc.stderr.read())


def wait_for(check, timeout: float) -> bool:  # noqa: ANN001
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.5)
    return False


def texts(home: Path, community: str) -> list[str]:
    res = p2p(home, "feed", community, "--json", check=False)
    return sorted(p["text"] for p in json.loads(res.stdout)) if res.returncode == 0 else []


def two_members(tmp_path: Path) -> tuple[Path, Path, str]:
    a, b = tmp_path / "a", tmp_path / "b"
    p2p(a, "init", "--no-passphrase", "--name", "Ann")
    p2p(b, "init", "--no-passphrase", "--name", "Ben")
    village = json.loads(p2p(a, "community", "create", "Village", "--json").stdout)["id"]
    p2p(a, "community", "invite", village, "--out", str(tmp_path / "v.inv"))
    p2p(b, "community", "join", str(tmp_path / "v.inv"))
    return a, b, village


def test_two_serves_with_no_route_and_no_host_converge_on_their_own(lab, tmp_path: Path) -> None:
    """No default route, no --host, no --interface, nobody types `sync`."""
    a, b, village = two_members(tmp_path)
    p2p(a, "post", village, "from ann")
    p2p(b, "post", village, "from ben")
    (ns_a, addr_a), (ns_b, _addr_b) = lab.host(), lab.host()
    for ns in (ns_a, ns_b):
        routes = lab.run(ns, ["ip", "route", "show", "default"], 10, capture_output=True)
        assert routes.stdout.strip() == b""  # an offline network: no gateway
    sa, sb = serve_anywhere(lab, ns_a, a), serve_anywhere(lab, ns_b, b)
    serving = first_event(sa, "serving")
    assert addr_a in serving["addresses"] and "127.0.0.1" not in serving["addresses"]
    assert addr_a in serving["message"]
    assert first_event(sb, "serving")["mdns"] is True
    both = ["from ann", "from ben"]
    assert wait_for(lambda: texts(a, village) == both and texts(b, village) == both, 40)
    session = first_event(sb, "session")  # reported as JSON
    assert session["shared_communities"] == 1 and session["direction"] in ("in", "out")
    # new content announced (a new token) is fetched again, still with nobody typing sync
    p2p(a, "post", village, "later news")
    assert wait_for(lambda: "later news" in texts(b, village), 40)


def test_sync_says_whether_anyone_was_there(lab, tmp_path: Path) -> None:
    a, b, _village = two_members(tmp_path)
    stranger = tmp_path / "s"
    p2p(stranger, "init", "--no-passphrase", "--name", "Sam")
    p2p(stranger, "community", "create", "Elsewhere")
    (ns_a, _), (ns_s, _) = lab.host(), lab.host()
    res = in_ns(lab, ns_a, a, "sync", "--timeout", "2")
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert "no peer found" in res.stderr and "--peer" in res.stderr
    server = serve_anywhere(lab, ns_s, stranger, "--no-auto")
    first_event(server, "serving")
    res = in_ns(lab, ns_a, a, "sync", "--timeout", "3")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "found 1 peer, but none shares a community with you" in res.stderr


def _forms(key: bytes) -> list[bytes]:
    import base64

    from p2p.identity import fingerprint

    fp = fingerprint(key)
    return [
        key,
        key.hex().encode(),
        key.hex().upper().encode(),
        base64.b32encode(key).rstrip(b"="),
        base64.b32encode(key).lower().rstrip(b"="),
        base64.b64encode(key).rstrip(b"="),
        fp.encode(),
        fp.replace("-", "").encode(),
        fp.lower().encode(),
    ]


def test_a_captured_stranger_session_and_announcements_reveal_no_one(lab, tmp_path: Path) -> None:
    """tcpdump in the server's namespace while a stranger browses, connects and tries
    to sync: neither key, fingerprint or community id of either side is on the wire."""
    a, _b, village = two_members(tmp_path)
    stranger = tmp_path / "s"
    p2p(stranger, "init", "--no-passphrase", "--name", "Sam")
    elsewhere = json.loads(p2p(stranger, "community", "create", "Elsewhere", "--json").stdout)
    secret = json.loads(p2p(a, "community", "create", "Hidden", "--private", "--json").stdout)
    keys = [
        bytes.fromhex(json.loads(p2p(h, "whoami", "--json").stdout)["public_key"])
        for h in (a, stranger)
    ]
    ids = [bytes.fromhex(x) for x in (village, elsewhere["id"], secret["id"])]
    (ns_a, _addr_a), (ns_s, _) = lab.host(), lab.host()
    pcap = tmp_path / "capture.pcap"
    dump = lab.popen(
        ns_a,
        ["tcpdump", "-i", "any", "-s", "0", "-U", "-w", str(pcap)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert wait_for(lambda: pcap.exists(), 10)
    server = serve_anywhere(lab, ns_a, a)
    first_event(server, "serving")
    res = in_ns(lab, ns_s, stranger, "sync", "--timeout", "4", "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    failed = json.loads(res.stdout)
    assert failed["kind"] == "no_shared_community" and len(failed["peers"]) == 1
    stranger_serve = serve_anywhere(lab, ns_s, stranger)  # a's serve browses and tries it
    first_event(stranger_serve, "serving")
    assert first_event(server, "stranger")
    for proc in (server, stranger_serve):
        proc.send_signal(2)
        proc.communicate(timeout=15)
    time.sleep(0.5)
    dump.send_signal(2)
    dump.communicate(timeout=10)
    raw = pcap.read_bytes()
    assert b"_p2psync" in raw and len(raw) > 2000  # the capture did see mDNS and TCP
    for key in keys:
        for form in _forms(key):
            assert form not in raw, form
    for cid in ids:
        for form in (cid, cid.hex().encode(), cid.hex().upper().encode(), cid.hex()[:8].encode()):
            assert form not in raw, form
    for name in (b"Ann", b"Sam", b"Village", b"Elsewhere", b"Hidden"):
        assert name not in raw


def test_remembered_addresses_work_where_multicast_does_not(lab, tmp_path: Path) -> None:
    """AP isolation, simulated by a serve that does not announce: after one
    `sync --peer`, a plain `sync` tries the remembered address first and gets through."""
    a, b, village = two_members(tmp_path)
    (ns_a, addr_a), (ns_b, _) = lab.host(), lab.host()
    server = serve_anywhere(lab, ns_a, a, "--no-mdns")
    first_event(server, "serving")
    assert in_ns(lab, ns_b, b, "sync", "--timeout", "1").returncode == 1  # nobody visible
    res = in_ns(lab, ns_b, b, "sync", "--peer", f"{addr_a}:7420")
    assert res.returncode == 0, res.stdout + res.stderr
    listed = json.loads(in_ns(lab, ns_b, b, "peers", "--timeout", "1", "--json").stdout)
    assert listed["remembered"] == [f"{addr_a}:7420"] and listed["visible"] == []
    p2p(a, "post", village, "news through a closed network")
    res = in_ns(lab, ns_b, b, "sync", "--timeout", "1", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert [(r["source"], r["ok"]) for r in json.loads(res.stdout)] == [("remembered", True)]
    assert "news through a closed network" in texts(b, village)
    assert "Forgot 1 address" in in_ns(lab, ns_b, b, "peers", "--forget").stdout


def test_serve_also_listens_on_ipv6_link_local(lab, tmp_path: Path) -> None:
    """With no --host, `serve` listens on the interface's IPv6 link-local address too
    (added once duplicate address detection is done); `sync --peer [fe80::..%if]:port`
    reaches it."""
    a, b, village = two_members(tmp_path)
    p2p(a, "post", village, "over ipv6")
    (ns_a, _), (ns_b, _) = lab.host(), lab.host()
    server = serve_anywhere(lab, ns_a, a, "--no-mdns")
    v6 = None
    end = time.monotonic() + 30
    while v6 is None and time.monotonic() < end:
        event = first_event(server, "serving")
        v6 = next((x for x in event["addresses"] if x.startswith("fe80::")), None)
    assert v6 is not None, "no IPv6 link-local address served"
    link = lab.run(ns_b, ["ip", "-o", "link", "show"], 10, capture_output=True, text=True)
    iface = next(
        line.split(": ")[1].split("@")[0]
        for line in link.stdout.splitlines()
        if ": lo:" not in line
    )
    res = in_ns(lab, ns_b, b, "sync", "--peer", f"[{v6.split('%')[0]}%{iface}]:7420")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "over ipv6" in texts(b, village)


def _drop_ipv4(lab: nslab.Lab, ns: str) -> None:
    out = lab.run(ns, ["ip", "-o", "-4", "addr", "show"], 10, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        parts = line.split()
        if parts[1] != "lo":
            lab.run(ns, ["ip", "addr", "del", parts[3], "dev", parts[1]], 10, check=True)


def test_two_serves_on_an_ipv6_link_local_only_network_converge(lab, tmp_path: Path) -> None:
    """A cable between two laptops and no DHCP: only fe80:: addresses. Both `serve`s
    announce over IPv6 mDNS, find each other and converge."""
    a, b, village = two_members(tmp_path)
    p2p(a, "post", village, "link-local only")
    (ns_a, _), (ns_b, _) = lab.host(), lab.host()
    for ns in (ns_a, ns_b):
        _drop_ipv4(lab, ns)
    sa, sb = serve_anywhere(lab, ns_a, a), serve_anywhere(lab, ns_b, b)
    for proc in (sa, sb):
        end = time.monotonic() + 30
        while time.monotonic() < end:  # the fe80:: address is usable after DAD
            event = first_event(proc, "serving")
            if any(x.startswith("fe80::") for x in event["addresses"]):
                break
    assert wait_for(lambda: "link-local only" in texts(b, village), 40)
