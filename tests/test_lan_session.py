"""LAN sync sessions on 127.0.0.1: real homes, real TCP, real Noise, real signatures."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest

from p2p import community as cm
from p2p import content, feed, invites
from p2p.errors import HandshakeFailed, LanError, PeerMisbehaved, PeerTimeout
from p2p.home import Home
from p2p.lan import channel as ch
from p2p.lan import session
from p2p.lan.server import Server, sync_with
from tests.helpers import make_home

pytestmark = pytest.mark.timeout(60)


def dump(home: Home) -> list[str]:
    return [r for r in home.store.db.iterdump() if 'INSERT INTO "peer' not in r]


@pytest.fixture
def trio(tmp_path: Path):
    alice = make_home(tmp_path / "alice", "Alice")
    bob = make_home(tmp_path / "bob", "Bob")
    eve = make_home(tmp_path / "eve", "Eve")
    village = cm.create(alice, "Village")
    secret = cm.create(alice, "Secret", private=True)
    for h in (bob, eve):
        invites.join(h, invites.write(alice, village))
    invites.join(bob, invites.write(alice, secret))
    content.post(alice, village, "open post")
    content.post(alice, secret, "private post")
    yield alice, bob, eve, village, secret
    for h in (alice, bob, eve):
        h.close()


async def serve(home: Home, **kw) -> Server:
    server = Server(home, "127.0.0.1", 0, **kw)
    await server.start()
    return server


def test_sync_both_ways_and_only_delta(trio) -> None:
    alice, bob, _eve, village, secret = trio
    bv = cm.resolve(bob, village.hex)
    content.post(bob, bv, "bob post")

    async def go():
        server = await serve(alice)
        try:
            first = await sync_with(bob, "127.0.0.1", server.port)
            second = await sync_with(bob, "127.0.0.1", server.port)
            content.post(alice, village, "one more")
            third = await sync_with(bob, "127.0.0.1", server.port)
            return first, second, third
        finally:
            await server.close()

    first, second, third = asyncio.run(go())
    assert set(first.shared) == {village.id, secret.id}
    assert feed.thread(alice, village) == feed.thread(bob, bv)
    bs = cm.resolve(bob, secret.hex)
    assert [p["text"] for p in feed.all_posts(bob, bs)] == ["private post"]
    assert second.sent_records == 0 and second.received_records == 0
    assert third.received_records == 1 and third.report.applied == 1
    assert (third.news.posts, third.news.members) == (1, 0)
    assert third.sent_records == 0  # alice's feed, which she is ahead on, is not sent back
    assert third.bytes_received < first.bytes_received


def test_unasked_documents_are_refused(trio, monkeypatch) -> None:
    """A peer that pushes documents the other did not ask for (here: everything
    it has, again) is cut off and nothing of the session is stored."""
    from p2p import exchange

    alice, bob, *_ = trio

    async def sync_once():
        server = await serve(alice)
        try:
            return await sync_with(bob, "127.0.0.1", server.port)
        finally:
            await server.close()

    asyncio.run(sync_once())  # now both hold everything
    content.post(alice, trio[3], "fresh")
    before = dump(alice)
    honest = exchange.records_wanted

    def pushy(home, theirs, wanted):  # noqa: ANN001, ANN202
        if home is bob:
            return exchange.records_for(home, None)
        return honest(home, theirs, wanted)

    monkeypatch.setattr(exchange, "records_wanted", pushy)
    server_box: list[Server] = []

    async def go():
        server = await serve(alice)
        server_box.append(server)
        try:
            with pytest.raises(LanError):
                await sync_with(bob, "127.0.0.1", server.port)
        finally:
            await server.close()

    asyncio.run(go())
    assert dump(alice) == before
    assert server_box[0].results == []  # alice's side ended the session


def test_diverged_documents_exchange_only_their_new_changes(trio) -> None:
    """Both sides changed the shared community document since they last met:
    each sends only its own new change, never the whole document."""
    from p2p import exchange

    alice, bob, _eve, village, _secret = trio
    cm.set_role(alice, village, bob.public_key, "moderator")

    async def sync_once():
        server = await serve(alice)
        try:
            return await sync_with(bob, "127.0.0.1", server.port)
        finally:
            await server.close()

    asyncio.run(sync_once())
    bv = cm.resolve(bob, village.hex)
    cm.update_settings(alice, village, rules="be kind")
    cm.update_settings(bob, bv, description="river news")
    inv_a, inv_b = exchange.inventory(alice), exchange.inventory(bob)
    for src, dst_inv, dst_want in (
        (bob, inv_a, exchange.wants(alice, inv_a, inv_b, exchange.known_by(alice, bob.public_key))),
        (alice, inv_b, exchange.wants(bob, inv_b, inv_a, exchange.known_by(bob, alice.public_key))),
    ):
        records = list(exchange.records_wanted(src, dst_inv, dst_want))
        assert [(r["doc"], r["enc"].startswith("changes")) for r in records] == [
            (village.ref.id, True)
        ]
    result = asyncio.run(sync_once())
    assert result.sent_records == 1 and result.received_records == 1
    for h, c in ((alice, village), (bob, bv)):
        got = cm.settings(h, c)
        assert (got["rules"], got["description"]) == ("be kind", "river news")


def test_non_member_learns_nothing_of_private(trio) -> None:
    alice, _bob, eve, village, secret = trio

    async def go():
        server = await serve(alice)
        try:
            return await sync_with(eve, "127.0.0.1", server.port), server.results
        finally:
            await server.close()

    result, server_side = asyncio.run(go())
    assert result.shared == [village.id]
    assert server_side[0].shared == [village.id]
    assert (
        eve.store.db.execute(
            "SELECT count(*) FROM docs WHERE community = ?", (secret.id,)
        ).fetchone()[0]
        == 0
    )


def test_store_and_forward_through_a_member(trio) -> None:
    """Alice and Eve never meet; Bob carries Alice's posts to Eve."""
    alice, bob, eve, village, _secret = trio

    async def go():
        a = await serve(alice)
        b = await serve(bob)
        try:
            await sync_with(bob, "127.0.0.1", a.port)  # bob meets alice
            return await sync_with(eve, "127.0.0.1", b.port)  # later, eve meets bob
        finally:
            await a.close()
            await b.close()

    result = asyncio.run(go())
    ev = cm.resolve(eve, village.hex)
    assert [p["text"] for p in feed.all_posts(eve, ev)] == ["open post"]
    assert result.report.rejected == []
    assert alice.public_key.hex() in {p["author"] for p in feed.all_posts(eve, ev)}


def test_serve_sees_posts_made_by_another_process(trio) -> None:
    """`p2p serve` runs for hours while the user posts with `p2p post` beside it."""
    alice, bob, _eve, village, _secret = trio

    async def go():
        server = await serve(alice)
        try:
            await sync_with(bob, "127.0.0.1", server.port)  # warms the server's cache
            other_process = Home(alice.path)  # a second connection, as `p2p post` has
            content.post(other_process, village, "posted while serving")
            other_process.close()
            return await sync_with(bob, "127.0.0.1", server.port)
        finally:
            await server.close()

    result = asyncio.run(go())
    assert result.report.applied == 1
    texts = [p["text"] for p in feed.all_posts(bob, cm.resolve(bob, village.hex))]
    assert "posted while serving" in texts


def test_membership_proofs_are_session_bound(trio) -> None:
    alice, _bob, _eve, village, _secret = trio
    p1 = session.proof(village, b"h" * 32, alice.public_key)
    p2 = session.proof(village, b"g" * 32, alice.public_key)
    p3 = session.proof(village, b"h" * 32, b"x" * 32)
    assert len({p1, p2, p3}) == 3


def test_forged_change_inside_valid_session_is_rejected(trio) -> None:
    """A peer with a valid identity sends a change written into someone else's feed."""
    alice, bob, _eve, village, _secret = trio
    from automerge.core import ROOT, Document, ScalarType

    from p2p import signing
    from p2p.docref import FEED, DocRef
    from p2p.documents import as_raw

    # bob has alice's feed, then forges a change into it, signed with his own key
    async def first_sync():
        server = await serve(alice)
        try:
            await sync_with(bob, "127.0.0.1", server.port)
        finally:
            await server.close()

    asyncio.run(first_sync())
    ref = DocRef(village.id, FEED, alice.public_key)
    doc = Document.load(bob.docs.data(ref.id))
    doc.set_actor(bob.public_key)
    with doc.transaction() as tx:
        tx.put(ROOT, "note", ScalarType.Str, "forged")
    change = as_raw(doc.get_last_local_change())
    sig = signing.sign(bob.identity, ref.id, change.hash)
    with bob.store.transaction() as db:  # bob's store is tampered with by bob himself
        bob.docs.replace(db, ref, doc)
        db.execute("INSERT INTO sigs VALUES (?, ?, ?, ?)", (ref.id, *sig))
    bob.docs.forget()
    before = dump(alice)

    async def second_sync():
        server = await serve(alice)
        try:
            await sync_with(bob, "127.0.0.1", server.port)
        finally:
            await server.close()  # lets alice's side finish applying
        return server.results[-1]

    result = asyncio.run(second_sync())
    assert [r.reason for r in result.report.rejected] == ["only its owner may write this feed"]
    assert dump(alice) == before
    assert "forged" not in str(feed.author_doc(alice, ref.id))

    # the same through the CLI: `p2p sync` reports it and exits 1
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    cli = [sys.executable, "-m", "p2p.cli.main"]
    server = subprocess.Popen(
        [*cli, "--home", str(bob.path), "serve", "--host", "127.0.0.1", "--port", "0"]
        + ["--no-mdns", "--duration", "20", "--json"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        port = json.loads(server.stdout.readline())["port"]
        res = subprocess.run(
            [*cli, "--home", str(alice.path), "sync", "--peer", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
    finally:
        server.terminate()
        server.wait(10)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "only its owner may write this feed" in res.stdout
    assert res.stderr.startswith("error: 1 change received was rejected")
    assert "forged" not in str(feed.author_doc(alice, ref.id))


def test_wrong_identity_proof_fails_handshake(trio) -> None:
    alice, bob, eve, *_ = trio
    outcome: list[BaseException | bytes] = []

    async def handler(reader, writer):
        try:
            chan = await ch.accept_channel(reader, writer, alice.identity, io_timeout=5)
            outcome.append(chan.peer_key)
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            outcome.append(exc)
        writer.close()

    async def go(claim: bytes, signer: Home):
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            noise = ch._noise(True)
            ch._raw_write(writer, noise.write_message())
            noise.read_message(await ch._raw_read(reader, 5))
            ch._raw_write(writer, noise.write_message())
            chan = ch.Channel(reader, writer, noise, 5, ch.MAX_MESSAGE)
            import msgpack

            sig = signer.identity.sign(ch.BIND_TAG + chan.handshake_hash + b"I")
            await chan.send(msgpack.packb({"key": claim, "sig": sig}))
            await asyncio.sleep(0.3)
            writer.close()
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(go(eve.public_key, bob))  # claims eve, signs as bob
    asyncio.run(go(bob.public_key, bob))  # honest
    assert isinstance(outcome[0], HandshakeFailed)
    assert outcome[1] == bob.public_key


def test_garbage_and_huge_frames(trio) -> None:
    alice, bob, *_ = trio

    async def go():
        server = await serve(alice, io_timeout=1.0)
        try:
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            w.write(b"GET / HTTP/1.1\r\n\r\n" * 10)
            await w.drain()
            assert await asyncio.wait_for(r.read(), 5) == b""  # server hung up
            w.close()
            # a good handshake, then a message announcing 4 GiB
            chan = await ch.open_channel("127.0.0.1", server.port, bob.identity, io_timeout=2)
            await chan.recv()  # alice's hello
            chan._writer.write(chan._frame(struct.pack(">I", 0xFFFFFFFF)))
            await chan._writer.drain()
            assert await asyncio.wait_for(chan._reader.read(), 5) == b""
            # a client, then silence: cut off after io_timeout, others unaffected
            stalled = await ch.open_channel("127.0.0.1", server.port, bob.identity, io_timeout=5)
            result = await sync_with(bob, "127.0.0.1", server.port)
            await asyncio.sleep(1.5)
            await stalled.close()
            return result
        finally:
            await server.close()

    result = asyncio.run(go())
    assert result.report.rejected == []
    assert result.received_records > 0


def test_one_address_cannot_take_every_slot(trio) -> None:
    """Connections that never speak hold at most MAX_PER_ADDRESS slots; the next
    one from that address is closed at once, and the server stays usable."""
    from p2p.lan import server as srv

    alice, bob, *_ = trio

    async def go():
        server = await serve(alice, io_timeout=5.0)
        silent = []
        try:
            for _ in range(srv.MAX_PER_ADDRESS):
                silent.append(await asyncio.open_connection("127.0.0.1", server.port))
            await asyncio.sleep(0.2)
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            refused = await asyncio.wait_for(r.read(), 2)  # closed without a word
            w.close()
            for _r, sw in silent:
                sw.close()
            await asyncio.sleep(0.2)
            result = await sync_with(bob, "127.0.0.1", server.port)
            return refused, result
        finally:
            await server.close()

    refused, result = asyncio.run(go())
    assert refused == b""
    assert result.report.rejected == [] and result.shared


def test_half_a_record_then_silence_is_cut_off(trio) -> None:
    alice, bob, *_ = trio
    before = dump(alice)

    async def go():
        server = await serve(alice, io_timeout=1.0)
        try:
            chan = await ch.open_channel("127.0.0.1", server.port, bob.identity, io_timeout=5)
            await chan.recv()  # alice's hello
            frame = chan._frame(struct.pack(">I", 5000)) + chan._frame(b"x" * 3000)
            chan._writer.write(frame + chan._frame(b"y" * 100)[:40])  # half a frame, then silence
            await chan._writer.drain()
            t = asyncio.get_running_loop().time()
            assert await asyncio.wait_for(chan._reader.read(), 10) == b""  # server hung up
            waited = asyncio.get_running_loop().time() - t
            assert dump(alice) == before  # nothing of the half session was kept
            # afterwards the server serves others normally
            result = await sync_with(bob, "127.0.0.1", server.port)
            return waited, result
        finally:
            await server.close()

    waited, result = asyncio.run(go())
    assert 0.5 < waited < 5
    assert result.report.rejected == [] and result.received_records > 0


def test_peer_vanishing_mid_stream_keeps_nothing(trio, monkeypatch) -> None:
    alice, bob, _eve, village, _secret = trio
    before = dump(bob)
    real_send = ch.Channel.send
    sent = {"n": 0}

    async def flaky_send(self, data: bytes) -> None:  # alice's side drops mid-stream
        sent["n"] += 1
        if sent["n"] == 4 and self.peer_key == bob.public_key:
            self._writer.transport.abort()
            raise ConnectionResetError("simulated drop")
        await real_send(self, data)

    async def go():
        server = await serve(alice)
        try:
            monkeypatch.setattr(ch.Channel, "send", flaky_send)
            with pytest.raises(LanError):
                await sync_with(bob, "127.0.0.1", server.port, io_timeout=3)
        finally:
            await server.close()

    asyncio.run(go())
    assert dump(bob) == before


def test_replayed_session_is_refused(trio) -> None:
    """Bytes recorded from one session, replayed to the server, fail the handshake."""
    alice, bob, *_ = trio
    recorded: list[bytes] = []

    async def go():
        server = await serve(alice, io_timeout=2.0)
        try:
            # record what bob's client sends in a real session through a relay
            async def relay(r, w):
                ur, uw = await asyncio.open_connection("127.0.0.1", server.port)

                async def pump(src, dst, keep):
                    while data := await src.read(65536):
                        if keep:
                            recorded.append(data)
                        dst.write(data)
                        await dst.drain()
                    dst.close()

                await asyncio.gather(pump(r, uw, True), pump(ur, w, False))

            proxy = await asyncio.start_server(relay, "127.0.0.1", 0)
            port = proxy.sockets[0].getsockname()[1]
            await sync_with(bob, "127.0.0.1", port)
            proxy.close()
            before = len(server.results)
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            w.write(b"".join(recorded))
            await w.drain()
            await asyncio.wait_for(r.read(), 10)
            w.close()
            return before, len(server.results)
        finally:
            await server.close()

    before, after = asyncio.run(go())
    assert before == 1 and after == 1


def test_channel_errors_are_typed() -> None:
    assert issubclass(HandshakeFailed, LanError)
    assert issubclass(PeerMisbehaved, LanError)
    assert issubclass(PeerTimeout, LanError)
