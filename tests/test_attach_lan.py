"""Attachments over real LAN sessions (127.0.0.1, real Noise): only what the other
side lacks, resuming at the chunk where a cut session stopped."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import pytest

from p2p import community as cm
from p2p import content, invites
from p2p.blobs import attach
from p2p.blobs.manifest import CHUNK
from p2p.blobs.store import BlobStore, ReadAhead
from p2p.errors import LanError
from p2p.lan.server import Server, sync_with
from tests.helpers import make_home

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def duo(tmp_path: Path):
    alice, bob = make_home(tmp_path / "alice", "Alice"), make_home(tmp_path / "bob", "Bob")
    village = cm.create(alice, "Village")
    secret = cm.create(alice, "Secret", private=True)
    for c in (village, secret):
        invites.join(bob, invites.write(alice, c))
    yield alice, bob, village, secret
    alice.close()
    bob.close()


def _attach(home, c, data: bytes, name: str):  # noqa: ANN001, ANN202
    src = home.path.parent / name
    src.write_bytes(data)
    (e,) = attach.add_files(home, [src], private=c.private)
    content.post(home, c, f"with {name}", attachments=[e.as_doc()])
    return e


async def _sync(server_home, client_home):  # noqa: ANN001, ANN202
    server = Server(server_home, "127.0.0.1", 0)
    await server.start()
    try:
        return await sync_with(client_home, "127.0.0.1", server.port)
    finally:
        await server.close()


def test_attachments_cross_a_session_both_ways_once(duo) -> None:
    alice, bob, village, secret = duo
    a1 = _attach(alice, village, os.urandom(2 * CHUNK + 1), "open.bin")
    a2 = _attach(alice, secret, os.urandom(CHUNK // 3), "sealed.bin")
    bv = cm.resolve(bob, village.hex)
    b1 = _attach(bob, bv, os.urandom(1000), "from-bob.txt")
    first = asyncio.run(_sync(alice, bob))
    assert first.attachments.chunks == 4 and not first.attachments.refused
    for home, e in ((bob, a1), (bob, a2), (alice, b1)):
        out = io.BytesIO()
        BlobStore(home).save(e.id, out, e.key)
        assert len(out.getvalue()) == e.size
    again = asyncio.run(_sync(alice, bob))
    assert again.attachments.chunks == 0  # nothing crosses twice


def test_a_cut_session_resumes_at_the_chunk_where_it_stopped(duo, monkeypatch) -> None:
    alice, bob, village, _secret = duo
    e = _attach(alice, village, os.urandom(6 * CHUNK), "film.bin")
    real = ReadAhead.get  # where the sender reads each chunk it sends
    reads = {"n": 0}

    def flaky(self, chunk_hash, then=None):  # noqa: ANN001, ANN202
        reads["n"] += 1
        if reads["n"] > 4:
            raise ConnectionResetError("the Wi-Fi went away")
        return real(self, chunk_hash, then)

    monkeypatch.setattr(ReadAhead, "get", flaky)
    with pytest.raises((LanError, ConnectionResetError)):
        asyncio.run(_sync(alice, bob))
    p = BlobStore(bob).presence(e.id)
    assert p is not None and p.state == "partial" and p.have == 4
    monkeypatch.setattr(ReadAhead, "get", real)
    second = asyncio.run(_sync(alice, bob))
    assert second.attachments.chunks == 2  # only the rest
    out = io.BytesIO()
    BlobStore(bob).save(e.id, out)
    assert len(out.getvalue()) == 6 * CHUNK
