"""The unlock agent: keeps one home's unlocked identity in memory for a while.

`p2p unlock` pays the scrypt cost once and hands the secrets to a small
process of its own (`python -m p2p.agent`), which serves them over a Unix
socket to the owner's later commands, as ssh-agent and gpg-agent do:

- the socket lives in a directory of ours, `0700` (`$XDG_RUNTIME_DIR/p2p` or
  `<tmp>/p2p-<uid>`; a directory owned by someone else or open to others is
  refused), is itself `0600`, and is named after the home's real path;
- the agent answers only peers whose `SO_PEERCRED` uid is its own uid (root
  included: root is refused too unless the agent runs as root), and a client
  only trusts an agent running under its own uid;
- the secrets travel over the socket and live in memory only; the agent is
  not dumpable (no core file, no ptrace by other processes of the user);
- it exits when its lifetime ends (`--for`, default 8 h), after 15 minutes
  without a request (`--idle`), on `p2p lock`, or on SIGTERM/SIGHUP, and
  removes its socket.

Requests and answers are one msgpack map each, prefixed with a 4-byte
big-endian length (at most `MAX_MESSAGE`): `{"op": "get"}` gives
`{"public_key", "secret", "expires", "idle"}`, `{"op": "status"}` the same
without the secret, `{"op": "lock"}` ends the agent.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import signal
import socket
import stat
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import msgpack

from p2p.errors import AgentError

DEFAULT_LIFETIME = 8 * 3600
DEFAULT_IDLE = 15 * 60
MAX_LIFETIME = 7 * 24 * 3600
MAX_MESSAGE = 4096
CLIENT_TIMEOUT = 2.0
_LEN = struct.Struct(">I")


@dataclass(frozen=True)
class Status:
    public_key: bytes
    expires: float  # Unix time the agent exits at the latest
    idle: float  # seconds without a request before it exits


def socket_dir() -> Path:
    base = os.environ.get("P2P_AGENT_DIR")
    if base:
        return Path(base)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "p2p"
    return Path(tempfile.gettempdir()) / f"p2p-{os.geteuid()}"


def socket_path(home: Path) -> Path:
    name = hashlib.sha256(os.fsencode(os.path.realpath(home))).hexdigest()[:24]
    return socket_dir() / f"agent-{name}.sock"


def _private_dir(create: bool) -> Path | None:
    """Our socket directory, only if it is ours and closed to others."""
    path = socket_dir()
    if create:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700, parents=False)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise AgentError(f"{path} is not a directory of yours; not using it for the unlock agent")
    if info.st_mode & 0o077:
        if not create:
            raise AgentError(f"{path} is open to other users; not using it for the unlock agent")
        os.chmod(path, 0o700)
    return path


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def _send(sock: socket.socket, obj: dict) -> None:
    data = msgpack.packb(obj)
    sock.sendall(_LEN.pack(len(data)) + data)


def _recv(sock: socket.socket) -> dict:
    head = _read_exactly(sock, _LEN.size)
    (size,) = _LEN.unpack(head)
    if size > MAX_MESSAGE:
        raise AgentError("the unlock agent sent an oversized message")
    obj = msgpack.unpackb(_read_exactly(sock, size), max_bin_len=MAX_MESSAGE)
    if not isinstance(obj, dict):
        raise AgentError("the unlock agent sent a malformed message")
    return obj


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        part = sock.recv(size - len(out))
        if not part:
            raise ConnectionError("closed")
        out += part
    return bytes(out)


# --- client ----------------------------------------------------------------------


def _ask(home: Path, request: dict) -> dict | None:
    """The agent's answer, or None when no agent runs for this home."""
    path = socket_path(home)
    try:
        if _private_dir(create=False) is None or not path.exists():
            return None
    except AgentError:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CLIENT_TIMEOUT)
    try:
        sock.connect(str(path))
        if _peer_uid(sock) != os.geteuid():
            return None  # not our agent
        _send(sock, request)
        return _recv(sock)
    except (OSError, ConnectionError, ValueError, msgpack.UnpackException):
        return None
    finally:
        sock.close()


def fetch(home: Path) -> tuple[bytes, bytes] | None:
    """(public key, secret bytes) from a running agent, or None."""
    got = _ask(home, {"op": "get"})
    if not got or not isinstance(got.get("secret"), bytes):
        return None
    return got["public_key"], got["secret"]


def status(home: Path) -> Status | None:
    got = _ask(home, {"op": "status"})
    if not got or not isinstance(got.get("public_key"), bytes):
        return None
    return Status(got["public_key"], float(got["expires"]), float(got["idle"]))


def lock(home: Path) -> bool:
    """End the agent of this home; False when none was running."""
    return _ask(home, {"op": "lock"}) is not None


def start(home: Path, public_key: bytes, secret: bytes, lifetime: float, idle: float) -> Status:
    """Start an agent holding `secret`; the secret goes through a pipe, never a file."""
    import subprocess

    if not 0 < lifetime <= MAX_LIFETIME or not 0 < idle <= MAX_LIFETIME:
        raise AgentError("the unlock duration must be between 1 second and 7 days")
    _private_dir(create=True)
    path = socket_path(home)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a stale socket (status() found no agent behind it)
    proc = subprocess.Popen(
        [sys.executable, "-m", "p2p.agent", str(path), str(lifetime), str(idle)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(msgpack.packb({"public_key": public_key, "secret": secret}))
        proc.stdin.close()
        ready = proc.stdout.readline()
    finally:
        proc.stdout.close()
    if ready.strip() != b"ready":
        proc.wait(timeout=5)
        raise AgentError("the unlock agent could not start")
    return Status(public_key, time.time() + lifetime, idle)


# --- the agent process -------------------------------------------------------------


def _harden() -> None:
    """No core dumps and no ptrace by the user's other processes (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    with contextlib.suppress(Exception):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def serve(path: Path, lifetime: float, idle: float) -> None:
    """The agent's main loop (runs in its own process)."""
    _harden()
    given = msgpack.unpackb(sys.stdin.buffer.read(MAX_MESSAGE), max_bin_len=MAX_MESSAGE)
    public_key, secret = given["public_key"], given["secret"]
    deadline = time.monotonic() + lifetime
    expires = time.time() + lifetime
    last = time.monotonic()
    stop = False

    def _stop(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    signal.signal(signal.SIGINT, _stop)
    old = os.umask(0o177)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    inode = os.stat(path).st_ino
    server.listen(8)
    uid = os.geteuid()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    os.close(1)
    os.open(os.devnull, os.O_WRONLY)  # fd 1 again, so nothing writes into a closed pipe
    try:
        while not stop:
            now = time.monotonic()
            left = min(deadline - now, last + idle - now)
            if left <= 0:
                break
            try:
                readable, _, _ = select.select([server], [], [], min(left, 1.0))
            except InterruptedError:
                continue
            if not readable:
                continue
            conn, _ = server.accept()
            with conn:
                conn.settimeout(CLIENT_TIMEOUT)
                try:
                    if _peer_uid(conn) != uid:
                        continue  # another user: no answer at all
                    request = _recv(conn)
                    op = request.get("op")
                    answer = {"public_key": public_key, "expires": expires, "idle": idle}
                    if op == "get":
                        answer["secret"] = secret
                        last = time.monotonic()
                    elif op == "lock":
                        stop = True
                    elif op != "status":
                        continue
                    _send(conn, answer)
                except (OSError, ConnectionError, ValueError, AgentError, msgpack.UnpackException):
                    continue
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == inode:  # not a newer agent's socket
                path.unlink()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]))
