"""An authenticated, encrypted channel over TCP: Noise XX, bound to Ed25519 identities.

The Noise handshake (`Noise_XX_25519_ChaChaPoly_SHA256`, noiseprotocol) gives
encryption and a handshake hash that commits to both sides' keys. Each side
then sends, encrypted, its Ed25519 public key and a signature over a domain
tag, that handshake hash and its role; a recorded session replayed into a new
handshake fails because the hash differs. Wire format in docs/lan-protocol.md.

Every read has a deadline and every length is checked before allocation.
"""

from __future__ import annotations

import asyncio
import struct

import msgpack
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from noise.connection import Keypair, NoiseConnection

from p2p.errors import HandshakeFailed, PeerMisbehaved, PeerTimeout, PeerUnreachable
from p2p.identity import Identity, verify

PROTOCOL = b"Noise_XX_25519_ChaChaPoly_SHA256"
PROLOGUE = b"p2p/lan/v1"
BIND_TAG = b"p2p/lan/v1\x00"
MAX_FRAME = 65535
TAG_LEN = 16
MAX_CHUNK = MAX_FRAME - TAG_LEN
MAX_MESSAGE = 16 * 1024 * 1024
HANDSHAKE_TIMEOUT = 15.0


def _static_key() -> bytes:
    return X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


class Channel:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        noise: NoiseConnection,
        io_timeout: float,
        max_message: int,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._noise = noise
        self.io_timeout = io_timeout
        self.max_message = max_message
        self.handshake_hash: bytes = noise.get_handshake_hash()
        self.peer_key: bytes = b""
        self._send_lock = asyncio.Lock()

    # --- frames -----------------------------------------------------------------

    async def _read_exact(self, n: int, mid: bool) -> bytes:
        try:
            return await asyncio.wait_for(self._reader.readexactly(n), self.io_timeout)
        except TimeoutError as exc:
            raise PeerTimeout(
                f"the peer sent nothing for {self.io_timeout:.0f} s; the session was closed"
            ) from exc
        except asyncio.IncompleteReadError as exc:
            what = "in the middle of a message" if mid or exc.partial else "before finishing"
            raise PeerMisbehaved(f"the peer disconnected {what}; nothing partial was kept") from exc
        except (ConnectionError, OSError) as exc:
            raise PeerMisbehaved(
                "the connection to the peer broke; nothing partial was kept"
            ) from exc

    async def _read_frame(self, mid: bool) -> bytes:
        (length,) = struct.unpack(">H", await self._read_exact(2, mid))
        if length < TAG_LEN:
            raise PeerMisbehaved("the peer sent a malformed frame")
        data = await self._read_exact(length, True)
        try:
            return self._noise.decrypt(data)
        except Exception as exc:  # noqa: BLE001 - any decryption failure is tampering
            raise PeerMisbehaved("a frame from the peer failed authentication (tampered?)") from exc

    def _frame(self, plain: bytes) -> bytes:
        sealed = self._noise.encrypt(plain)
        return struct.pack(">H", len(sealed)) + sealed

    # --- messages ---------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        if len(data) > self.max_message:
            raise ValueError("message larger than the channel allows")
        async with self._send_lock:
            out = [self._frame(struct.pack(">I", len(data)))]
            for i in range(0, len(data), MAX_CHUNK):
                out.append(self._frame(data[i : i + MAX_CHUNK]))
            try:
                self._writer.write(b"".join(out))
                await asyncio.wait_for(self._writer.drain(), self.io_timeout)
            except TimeoutError as exc:
                raise PeerTimeout("the peer stopped reading; the session was closed") from exc
            except (ConnectionError, OSError) as exc:
                raise PeerMisbehaved("the connection to the peer broke while sending") from exc

    async def recv(self) -> bytes:
        head = await self._read_frame(False)
        if len(head) != 4:
            raise PeerMisbehaved("the peer sent a malformed message header")
        (length,) = struct.unpack(">I", head)
        if length > self.max_message:
            raise PeerMisbehaved(
                f"the peer announced a {length}-byte message, over the {self.max_message}-byte "
                "limit; the session was closed"
            )
        parts: list[bytes] = []
        got = 0
        while got < length:
            chunk = await self._read_frame(True)
            if not chunk or got + len(chunk) > length:
                raise PeerMisbehaved("the peer's message does not match its announced length")
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    async def close(self) -> None:
        try:
            self._writer.close()
            await asyncio.wait_for(self._writer.wait_closed(), 2)
        except (TimeoutError, ConnectionError, OSError):
            pass


async def _raw_read(reader: asyncio.StreamReader, deadline: float) -> bytes:
    try:
        (length,) = struct.unpack(">H", await asyncio.wait_for(reader.readexactly(2), deadline))
        return await asyncio.wait_for(reader.readexactly(length), deadline)
    except TimeoutError as exc:
        raise PeerTimeout("the peer did not complete the handshake in time") from exc
    except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
        raise HandshakeFailed("the peer closed the connection during the handshake") from exc


def _raw_write(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(struct.pack(">H", len(data)) + data)


def _noise(initiator: bool) -> NoiseConnection:
    noise = NoiseConnection.from_name(PROTOCOL)
    if initiator:
        noise.set_as_initiator()
    else:
        noise.set_as_responder()
    noise.set_keypair_from_private_bytes(Keypair.STATIC, _static_key())
    noise.set_prologue(PROLOGUE)
    noise.start_handshake()
    return noise


def _binding(identity: Identity, handshake_hash: bytes, role: bytes) -> bytes:
    sig = identity.sign(BIND_TAG + handshake_hash + role)
    return msgpack.packb({"key": identity.public_key, "sig": sig})


def _check_binding(data: bytes, handshake_hash: bytes, role: bytes) -> bytes:
    try:
        obj = msgpack.unpackb(data, max_bin_len=64, max_map_len=4, max_str_len=16)
        key, sig = bytes(obj["key"]), bytes(obj["sig"])
    except Exception as exc:  # noqa: BLE001 - anything malformed fails the handshake
        raise HandshakeFailed("the peer's identity proof is malformed") from exc
    if not verify(key, sig, BIND_TAG + handshake_hash + role):
        raise HandshakeFailed("the peer's identity proof does not verify (forged identity?)")
    return key


async def _handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    identity: Identity,
    initiator: bool,
    io_timeout: float,
    max_message: int,
) -> Channel:
    noise = _noise(initiator)
    try:
        if initiator:
            _raw_write(writer, noise.write_message())
            noise.read_message(await _raw_read(reader, io_timeout))
            _raw_write(writer, noise.write_message())
        else:
            noise.read_message(await _raw_read(reader, io_timeout))
            _raw_write(writer, noise.write_message())
            noise.read_message(await _raw_read(reader, io_timeout))
        await writer.drain()
    except (HandshakeFailed, PeerTimeout):
        raise
    except (ConnectionError, OSError) as exc:
        raise HandshakeFailed("the connection broke during the handshake") from exc
    except Exception as exc:  # noqa: BLE001 - noise raises many types on bad input
        raise HandshakeFailed() from exc
    if not noise.handshake_finished:
        raise HandshakeFailed()
    chan = Channel(reader, writer, noise, io_timeout, max_message)
    mine, theirs = (b"I", b"R") if initiator else (b"R", b"I")
    await chan.send(_binding(identity, chan.handshake_hash, mine))
    try:
        proof = await chan.recv()
    except PeerMisbehaved as exc:
        raise HandshakeFailed("the peer did not prove its identity") from exc
    chan.peer_key = _check_binding(proof, chan.handshake_hash, theirs)
    return chan


async def open_channel(
    host: str,
    port: int,
    identity: Identity,
    *,
    io_timeout: float = 30.0,
    connect_timeout: float = 10.0,
    max_message: int = MAX_MESSAGE,
) -> Channel:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), connect_timeout
        )
    except (TimeoutError, ConnectionError, OSError) as exc:
        raise PeerUnreachable(f"could not connect to {host}:{port}") from exc
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT + io_timeout):
            return await _handshake(reader, writer, identity, True, io_timeout, max_message)
    except BaseException:
        writer.close()
        raise


async def accept_channel(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    identity: Identity,
    *,
    io_timeout: float = 30.0,
    max_message: int = MAX_MESSAGE,
) -> Channel:
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT + io_timeout):
            return await _handshake(reader, writer, identity, False, io_timeout, max_message)
    except TimeoutError as exc:
        raise PeerTimeout("the peer did not complete the handshake in time") from exc
