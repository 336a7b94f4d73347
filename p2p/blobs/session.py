"""Attachments over a LAN session (docs/lan-protocol.md §6, phase `blobs`).

After the documents are applied (so both sides know every post naming an
attachment), each side says which attachments of the shared communities it
holds, chunk by chunk (`blob_have`), then sends the manifests and chunks the
other lacks (`blob_manifest`, `blob_chunk`), then `blob_done`. Chunks are
checked and stored as they arrive and registered in batches, and whatever
arrived before a cut is kept (each chunk verified against its manifest on its
own): the next session's `blob_have` says so, and the sender resumes at the
first chunk still missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from p2p.blobs.exchange import Have, Plan, Received, Receiver, _parse_have, have, records_for
from p2p.errors import PeerMisbehaved
from p2p.home import Home

HAVE_CHUNK = 2000  # attachments per blob_have message
MAX_HAVE_TOTAL = 200_000
MAX_REFUSED = 1000  # refused blob messages before the peer counts as misbehaving
MAX_MESSAGES = 10_000_000

Progress = Callable[[int, int], None]  # (chunks received, bytes received)


class Wire(Protocol):
    async def send(self, obj: dict) -> None: ...
    async def recv(self, *expect: str) -> dict: ...


async def _both(*coros: Awaitable[Any]) -> None:
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            exc = task.exception()
            if exc is not None:
                raise exc
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run(
    home: Home,
    io: Wire,
    peer: bytes,
    communities: list[bytes],
    progress: Progress | None = None,
) -> Received:
    """The `blobs` phase, both sides alike; returns what arrived (and was refused)."""
    mine = have(home, communities)
    items = sorted(mine.items())
    for i in range(0, len(items), HAVE_CHUNK):
        await io.send({"t": "blob_have", "have": dict(items[i : i + HAVE_CHUNK])})
    await io.send({"t": "blob_have_end"})
    theirs: Have = {}
    while True:
        msg = await io.recv("blob_have", "blob_have_end")
        if msg["t"] == "blob_have_end":
            break
        try:
            theirs.update(_parse_have(msg.get("have")))
        except ValueError as exc:
            raise PeerMisbehaved("the peer sent a bad attachment list") from exc
        if len(theirs) > MAX_HAVE_TOTAL:
            raise PeerMisbehaved("the peer's attachment list is larger than a session may carry")

    receiver = Receiver(home, peer)
    plan = Plan(peer_have=theirs)

    async def send_all() -> None:
        sent = 0
        for record in records_for(home, communities, plan):
            if record["t"] not in ("blob-manifest", "blob-chunk"):
                continue
            await io.send({**record, "t": record["t"].replace("-", "_")})
            sent += 1
            await asyncio.sleep(0)
        await io.send({"t": "blob_done", "count": sent})

    async def receive_all() -> None:
        count = 0
        try:
            while True:
                msg = await io.recv("blob_manifest", "blob_chunk", "blob_done")
                if msg["t"] == "blob_done":
                    if msg.get("count") != count:
                        raise PeerMisbehaved("the peer's attachment count does not match")
                    return
                count += 1
                receiver.take({**msg, "t": msg["t"].replace("_", "-")})
                if len(receiver.result.refused) > MAX_REFUSED or count > MAX_MESSAGES:
                    raise PeerMisbehaved("the peer keeps sending attachment data that is refused")
                if progress is not None and msg["t"] == "blob_chunk":
                    progress(receiver.result.chunks, receiver.result.size)
        finally:
            receiver.store.commit()  # every chunk so far was verified on its own: keep it

    await _both(send_all(), receive_all())
    return receiver.finish()
