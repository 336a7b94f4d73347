"""A second LAN client, written from docs/lan-protocol.md alone (no `p2p` import in
the client: plain sockets, noiseprotocol, cryptography, msgpack), syncing from a
real `p2p` server on 127.0.0.1. If the code and the document drift apart, this
fails."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import socket
import struct
import threading
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
)
from noise.connection import NoiseConnection

from tests.test_bundle_spec import check_records

pytestmark = pytest.mark.timeout(60)


class Client:
    """Section 2: Noise NN handshake, frames."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.noise = NoiseConnection.from_name(b"Noise_NN_25519_ChaChaPoly_SHA256")
        self.noise.set_as_initiator()
        self.noise.set_prologue(b"p2p/lan/v2")
        self.noise.start_handshake()
        self._hs_send(self.noise.write_message())  # -> e
        self.noise.read_message(self._hs_recv())  # <- e, ee
        assert self.noise.handshake_finished
        self.handshake_hash = self.noise.get_handshake_hash()

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            got = self.sock.recv(n - len(out))
            assert got, "the server closed the connection"
            out += got
        return out

    def _hs_send(self, data: bytes) -> None:
        self.sock.sendall(struct.pack(">H", len(data)) + data)

    def _hs_recv(self) -> bytes:
        (n,) = struct.unpack(">H", self._exact(2))
        return self._exact(n)

    def _frame(self, plain: bytes) -> bytes:
        ct = self.noise.encrypt(plain)
        return struct.pack(">H", len(ct)) + ct

    def send(self, obj: dict) -> None:
        data = msgpack.packb(obj, use_bin_type=True)
        out = self._frame(struct.pack(">I", len(data)))
        for i in range(0, len(data), 65519):
            out += self._frame(data[i : i + 65519])
        self.sock.sendall(out)

    def recv(self) -> dict:
        (length,) = struct.unpack(">I", self.noise.decrypt(self._hs_recv()))
        data = b""
        while len(data) < length:
            data += self.noise.decrypt(self._hs_recv())
        return msgpack.unpackb(data, raw=False, strict_map_key=False)


def proof(descriptor: bytes, hh: bytes, role: bytes) -> bytes:
    """Section 3.1, for an open community: the key comes from id || owner || salt."""
    ck = HKDF(hashes.SHA256(), 32, salt=b"p2p/lan/community/v1", info=b"").derive(descriptor)
    return hmac.new(ck, b"p2p/lan/member/v2\x00" + hh + role, hashlib.sha256).digest()


def recv_list(client: Client, kind: str) -> dict:
    out: dict = {}
    while True:
        msg = client.recv()
        if msg["t"] == f"{kind}_end":
            return out
        assert msg["t"] == kind, msg["t"]
        out.update(msg["docs"])


def test_a_second_client_syncs_from_a_real_server(tmp_path: Path) -> None:
    from p2p import community as cm
    from p2p import content
    from p2p.lan.server import Server
    from tests.helpers import make_home

    alice = make_home(tmp_path / "alice", "Alice")
    village = cm.create(alice, "Village")
    content.post(alice, village, "hello second implementation")
    other = cm.create(alice, "Other")  # not shared with the client: must not show
    descriptor = village.id + village.owner + village.salt

    ready = threading.Event()
    stop = threading.Event()
    box: dict = {}

    def run_server() -> None:
        async def main() -> None:
            server = Server(alice, "127.0.0.1", 0)
            box["port"] = await server.start()
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            await server.close()
            box["results"] = server.results

        asyncio.run(main())

    thread = threading.Thread(target=run_server, daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        me = Ed25519PrivateKey.generate()
        my_key = me.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        client = Client(box["port"])
        hh = client.handshake_hash
        # 3.1 hello: we prove the one community we know (padded to 32); we recognise theirs
        mine = [proof(descriptor, hh, b"I")] + [os.urandom(32) for _ in range(31)]
        client.send({"t": "hello", "v": 2, "proofs": sorted(mine)})
        hello = client.recv()
        assert hello["t"] == "hello" and hello["v"] == 2
        assert len(hello["proofs"]) == 32 and hello["proofs"] == sorted(hello["proofs"])
        assert proof(descriptor, hh, b"R") in hello["proofs"]
        other_descriptor = other.id + other.owner + other.salt
        # alice also proves the community we do not share; without its descriptor
        # that proof is just 32 opaque bytes to us
        assert proof(other_descriptor, hh, b"R") in hello["proofs"]
        # 3.2 id, then shared
        client.send({"t": "id", "key": my_key, "sig": me.sign(b"p2p/lan/id/v2\x00" + hh + b"I")})
        their_id = client.recv()
        assert their_id["t"] == "id"
        Ed25519PublicKey.from_public_bytes(their_id["key"]).verify(
            their_id["sig"], b"p2p/lan/id/v2\x00" + hh + b"R"
        )
        assert their_id["key"] == alice.public_key
        client.send({"t": "shared", "communities": [village.id]})
        assert client.recv() == {"t": "shared", "communities": [village.id]}
        # 3.3 inv: we hold nothing; theirs lists only the shared community's documents
        client.send({"t": "inv_end"})
        theirs: dict = {}
        while (msg := client.recv())["t"] != "inv_end":
            assert msg["t"] == "inv" and msg["community"] == village.id
            theirs.update(msg["docs"])
        assert theirs and all(len(d) == 16 for d in theirs)
        # 3.4 want: everything, holding none of it
        client.send({"t": "want", "docs": {d: [] for d in theirs}})
        client.send({"t": "want_end"})
        assert recv_list(client, "want") == {}
        # 3.5 records, then done (we send none)
        client.send({"t": "done", "count": 0})
        records = []
        while True:
            msg = client.recv()
            if msg["t"] == "done":
                assert msg["count"] == len(records)
                break
            assert msg["t"] == "doc" and msg["community"] == village.id
            records.append(msg)
        assert {r["doc"] for r in records} == set(theirs)
        described = {
            "t": "community",
            "id": village.id,
            "owner": village.owner,
            "salt": village.salt,
        }
        docs, sigs = check_records([described, *records])  # the bundle-format rules
        assert docs == len(theirs) and sigs >= docs
        assert any(b"hello second implementation" in r["data"] for r in records)
        client.sock.close()
    finally:
        stop.set()
        thread.join(10)
    assert [r.peer for r in box["results"]] == [my_key]
    alice.close()


def test_a_client_proving_no_community_gets_none(tmp_path: Path) -> None:
    """Section 3.1: with no proof recognised, the server answers `none` and closes,
    having sent nothing but its padded proofs."""
    from p2p import community as cm
    from p2p.lan.server import Server
    from tests.helpers import make_home

    alice = make_home(tmp_path / "alice", "Alice")
    for name in ("A", "B", "C"):
        cm.create(alice, name)
    ready = threading.Event()
    stop = threading.Event()
    box: dict = {}

    def run_server() -> None:
        async def main() -> None:
            server = Server(alice, "127.0.0.1", 0)
            box["port"] = await server.start()
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            await server.close()
            box["results"] = server.results

        asyncio.run(main())

    thread = threading.Thread(target=run_server, daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        client = Client(box["port"])
        client.send({"t": "hello", "v": 2, "proofs": sorted(os.urandom(32) for _ in range(32))})
        hello = client.recv()
        assert hello["t"] == "hello" and len(hello["proofs"]) == 32  # 3 real, 29 filler
        assert all(isinstance(p, bytes) and len(p) == 32 for p in hello["proofs"])
        assert client.recv() == {"t": "none"}
        assert client.sock.recv(1) == b""  # then closed
        client.sock.close()
    finally:
        stop.set()
        thread.join(10)
    assert box["results"] == []
    alice.close()
