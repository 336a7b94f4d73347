"""Fuzz targets: each takes arbitrary bytes and may only fail with our own errors.

A target returns normally when the input was handled (accepted, or refused
with one of the project's errors); anything else that escapes (a KeyError, a
struct.error, a Rust panic of the Automerge binding, a hang) is a bug, and the
fuzzer records the input. The same targets run under atheris (`fuzz/run.py`,
coverage-guided, for long runs) and in the test suite (tests/test_fuzz.py,
a few seconds each). Seeds come from `bundles/vectors/` (`seeds()`).

- `bundle`: the bytes as a bundle file, through `verify_bundle` (container,
  records, signatures, document checks); or (first byte 0) as records that
  we wrap in a container whose trailer is validly signed, so the fuzzer gets
  past the trailer check into record parsing.
- `lan`: the bytes as what a peer sends after the Noise handshake: raw wire
  bytes (first byte = 0 mod 3), messages we frame and encrypt as a peer would
  (1), or plaintext frames of the fuzzer's choosing that we encrypt (2), so the
  fuzzer reaches message lengths, msgpack and the inventory checks.
- `accept`: the bytes as the body of a change chunk, or a saved document, by
  a real member of a community the receiver belongs to, validly framed and
  SIGNED with that member's key (what a hostile member can send), through
  `accept.from_record` and `Acceptor.accept`; or (first byte 0) as a whole
  msgpack record.
- `amformat`: `amformat.check`, then, if it passes, the Automerge boundary
  (`binding.load`).
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import blake3
import msgpack

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "bundles" / "vectors"


# --- seeds ------------------------------------------------------------------------


def _vector_files() -> list[Path]:
    return sorted(p for p in VECTORS.glob("**/*.p2p") if p.is_file())  # v1, and v2/


def _vector_records() -> Iterator[dict]:
    from p2p.bundle.container import BundleReader
    from p2p.errors import P2PError

    for path in _vector_files():
        try:
            with path.open("rb") as fh:
                yield from BundleReader(fh).records()
        except (P2PError, ValueError):
            continue


def seeds(target: str) -> list[bytes]:
    """Starting inputs for `target`, taken from bundles/vectors/."""
    if target == "bundle":
        records = list(_vector_records())
        signed = []
        for i in range(0, len(records), 8):
            packed = [p for p in map(msgpack.packb, records[i : i + 8]) if len(p) < 65536]
            signed.append(b"\x00" + b"".join(struct.pack(">H", len(p)) + p for p in packed))
        return [p.read_bytes() for p in _vector_files()] + signed
    docs = [r for r in _vector_records() if r.get("t") == "doc"]
    if target == "amformat":
        return [bytes(r["data"]) for r in docs if r.get("enc") in ("save", "changes")]
    if target == "accept":
        out = list(_world()["seeds"]) + [b"\x00" + msgpack.packb(r) for r in docs]
        for r in docs:
            if r.get("enc") == "save":
                out.append(b"\x02" + bytes(r["data"]))
            elif r.get("enc") == "changes":
                from p2p import chunk

                for c in chunk.split(bytes(r["data"])):
                    out.append(b"\x01" + _body(c.data))
        return out
    if target == "lan":
        msgs = [msgpack.packb({"t": "want", "docs": {b"d" * 16: [b"h" * 32]}})]
        msgs += [msgpack.packb({"t": "want_end"})] + [msgpack.packb(r) for r in docs[:8]]
        framed = b"".join(struct.pack(">H", len(m)) + m for m in msgs)
        headers = b"".join(struct.pack(">H", 4) + struct.pack(">I", len(m)) for m in msgs[:2])
        return [b"\x01" + framed, b"\x02" + headers, b"\x00" + bytes(64)]
    raise ValueError(f"no such target: {target}")


def _body(chunk_bytes: bytes) -> bytes:
    from p2p.chunk import _uleb

    length, start = _uleb(chunk_bytes, 9, len(chunk_bytes))
    return chunk_bytes[start : start + length]


def _frame_change(body: bytes) -> bytes:
    """A change chunk around `body` with a correct checksum (so it is parsed further)."""
    from p2p.chunk import MAGIC

    n, size = len(body), bytearray()
    while True:
        size.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            break
    head = b"\x01" + bytes(size)
    return MAGIC + hashlib.sha256(head + body).digest()[:4] + head + body


# --- targets ------------------------------------------------------------------------


def bundle(data: bytes) -> None:
    from p2p.bundle.verify import verify_bundle
    from p2p.errors import P2PError

    path = _scratch() / "input.p2p"
    if data[:1] == b"\x00":  # records of the fuzzer's bytes, in a validly signed bundle
        path.write_bytes(_signed_bundle(data[1:]))
    else:
        path.write_bytes(data)
    try:
        verify_bundle([path])
    except (P2PError, ValueError):
        pass


def _signed_bundle(data: bytes) -> bytes:
    """A container around records cut from `data` (u16 length, bytes), its trailer
    signed by the exporter it names: the reader trusts it and parses every record."""
    from p2p.bundle import container as c
    from p2p.identity import Identity

    exporter = _STATE.setdefault("exporter", Identity.generate())
    header = msgpack.packb({"exporter": exporter.public_key, "created": 1_700_000_000})
    out = bytearray(c.MAGIC + struct.pack(">HI", c.VERSION, len(header)) + header)
    count = 0
    while len(data) >= 2:
        (n,) = struct.unpack(">H", data[:2])
        record, data = data[2 : 2 + n], data[2 + n :]
        if record:
            out += struct.pack(">I", len(record)) + record
            count += 1
    out += struct.pack(">I", 0)
    digest = blake3.blake3(out).digest()  # version 2 (c.VERSION): BLAKE3, tag v2
    sig = exporter.sign(c.TAGS[c.VERSION] + digest + struct.pack(">Q", count))
    return bytes(out) + struct.pack(">Q", count) + digest + sig


def amformat(data: bytes) -> None:
    from p2p import amformat as am
    from p2p import binding
    from p2p.errors import AutomergeFormatError, DamagedData

    try:
        am.check(data, budget=64 * 1024 * 1024)
    except AutomergeFormatError:
        return
    try:
        binding.load(data)
    except DamagedData:
        pass


def accept(data: bytes) -> None:
    from p2p import accept as acc
    from p2p import signing

    world = _world()
    mode, body = (data[0] if data else 0), data[1:]
    if mode == 0:
        from p2p.bundle.container import _unpack
        from p2p.errors import P2PError

        try:  # decoded as the bundle reader decodes a record
            record = _unpack(body, 1 << 20)
            if not isinstance(record, dict):
                return
            incoming = acc.from_record(record)
        except (P2PError, ValueError):
            return
    else:
        ref = world["ref"]
        if mode % 2:
            raw = _frame_change(body)
            record = {**world["template"], "enc": "changes", "data": raw}
        else:
            record = {**world["template"], "enc": "save", "data": body}
        try:
            incoming = acc.from_record(record)
        except ValueError:
            return
        sigs = [signing.sign(world["member"], ref.id, c.hash) for c in incoming.changes]
        incoming.sigs.extend(sigs)
    world["home"].docs.forget()
    report = world["home"].acceptor().accept([incoming])
    if _STATE.get("verbose"):
        print(mode, report)


def lan(data: bytes) -> None:
    asyncio.run(_lan(data))


async def _lan(data: bytes) -> None:
    from p2p.errors import LanError
    from p2p.lan import channel as ch
    from p2p.lan import session

    sender, receiver = _noise_pair()
    reader = asyncio.StreamReader()
    mode, rest, wire = (data[0] % 3 if data else 0), data[1:], bytearray()

    def frame(plain: bytes) -> None:
        sealed = sender.encrypt(plain[: ch.MAX_CHUNK])
        wire.extend(struct.pack(">H", len(sealed)) + sealed)

    if mode == 0:  # raw wire bytes
        wire += rest
    while mode and len(rest) >= 2:
        (n,) = struct.unpack(">H", rest[:2])
        piece, rest = rest[2 : 2 + n], rest[2 + n :]
        if mode == 1:  # whole messages, framed as a peer's channel frames them
            frame(struct.pack(">I", len(piece)))
            for i in range(0, len(piece), ch.MAX_CHUNK):
                frame(piece[i : i + ch.MAX_CHUNK])
        else:  # frames of the fuzzer's choosing (lying length headers...)
            frame(piece)
    reader.feed_data(bytes(wire))
    reader.feed_eof()
    channel = ch.Channel(reader, _NullWriter(), receiver, False, 1.0, 1 << 20)  # type: ignore[arg-type]
    io = session.Wire(channel)
    try:
        await session._recv_heads(io, "want", lambda doc: True)
        for _ in range(64):
            await io.recv()
    except LanError:
        pass


# --- fixtures built once per process --------------------------------------------------

_STATE: dict[str, Any] = {}


def _scratch() -> Path:
    if "dir" not in _STATE:
        _STATE["dir"] = Path(tempfile.mkdtemp(prefix="p2p-fuzz-"))
    return Path(_STATE["dir"])


def _world() -> dict:
    """A receiver that belongs to a community, and a member of it whose key signs."""
    if "world" not in _STATE:
        from p2p import community as cm
        from p2p import content, exchange, invites
        from p2p.accept import from_record
        from p2p.home import Home

        base = _scratch()
        owner = Home(base / "owner")
        owner.create_identity(None)
        community = cm.create(owner, "Fuzz square")
        member = Home(base / "member")
        member.create_identity(None)
        invites.join(member, invites.write(owner, community))
        content.post(member, community, "a first post")
        owner.acceptor().accept([from_record(r) for r in exchange.records_for(member, None)])
        ref = content.feed_ref(community, member.public_key)
        before = member.docs.heads(ref.id)
        for text in ("second", "third"):
            content.post(member, community, text)
        fresh = [c.data for c in member.docs.iter_changes(ref.id, before)]
        saved = member.docs.data(ref.id)
        template = {"t": "doc", "community": ref.community, "kind": ref.kind,
                    "owner": ref.owner, "doc": ref.id, "sigs": []}  # fmt: skip
        _STATE["world"] = {
            "home": owner,
            "member": member.identity,
            "ref": ref,
            "template": template,
            "seeds": [b"\x01" + _body(c) for c in fresh] + [b"\x02" + (saved or b"")],
        }
    return _STATE["world"]


def _noise_pair() -> tuple[Any, Any]:
    from p2p.lan import channel as ch

    a, b = ch._noise(True), ch._noise(False)  # Noise NN: -> e, <- e, ee
    b.read_message(a.write_message())
    a.read_message(b.write_message())
    return a, b


class _NullWriter:
    def write(self, _data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


TARGETS: dict[str, Callable[[bytes], None]] = {
    "bundle": bundle,
    "lan": lan,
    "accept": accept,
    "amformat": amformat,
}
