"""A small lab of network namespaces for tests that cross a (virtual) network.

Each host is a namespace with its own 10.x address on a bridge that lives in a
separate "switch" namespace, so nothing appears in the machine's own network
and no packet can leave it. Processes run inside with `ip netns exec`, die
with the test runner (PR_SET_PDEATHSIG), and everything is removed on close,
even after a failure; namespaces left by a killed run are swept by PID.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid

PREFIX = "p2pt"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if shutil.which("ip") is None:
        return "iproute2 'ip' is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root ('ip netns add')"
    probe = f"{PREFIX}-{os.getpid()}-probe"
    res = ip("netns", "add", probe, check=False)
    if res.returncode != 0:
        return f"'ip netns add' is not allowed here: {res.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


def sweep() -> None:
    """Remove namespaces of earlier runs whose test process is gone."""
    for line in ip("netns", "list", check=False).stdout.splitlines():
        m = re.match(rf"({PREFIX}-(\d+)-[0-9a-f]+)", line)
        if m and not os.path.exists(f"/proc/{m.group(2)}"):
            ip("netns", "del", m.group(1), check=False)


class Lab:
    def __init__(self, subnet: str = "10.77.0") -> None:
        self.subnet = subnet
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.switch = self._ns()
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
        ip("-n", self.switch, "link", "set", "br0", "up")
        self.hosts: list[tuple[str, str]] = []

    def _ns(self) -> str:
        name = f"{PREFIX}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def host(self) -> tuple[str, str]:
        """A new namespace plugged into the switch: (namespace, address)."""
        ns = self._ns()
        n = len(self.hosts) + 1
        addr = f"{self.subnet}.{n}"
        tag = uuid.uuid4().hex[:6]
        inner, outer = f"h{tag}", f"s{tag}"
        ip(
            "link",
            "add",
            inner,
            "netns",
            ns,
            "type",
            "veth",
            "peer",
            "name",
            outer,
            "netns",
            self.switch,
        )
        ip("-n", self.switch, "link", "set", outer, "master", "br0")
        ip("-n", self.switch, "link", "set", outer, "up")
        ip("-n", ns, "addr", "add", f"{addr}/24", "dev", inner)
        ip("-n", ns, "link", "set", inner, "up")
        self.hosts.append((ns, addr))
        return ns, addr

    def popen(self, ns: str, args: list[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *args], preexec_fn=_die_with_parent, **kw
        )
        self.procs.append(proc)
        return proc

    def run(self, ns: str, args: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *args], timeout=timeout, preexec_fn=_die_with_parent, **kw
        )

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        for ns in reversed(self.namespaces):
            ip("netns", "del", ns, check=False)
