"""An encrypted channel over TCP that says nothing about who is at either end.

Phase HANDSHAKE of docs/lan-protocol.md: `Noise_NN_25519_ChaChaPoly_SHA256`
(noiseprotocol), ephemeral keys only, so a stranger who connects learns no
long-term key. What the channel gives the session above it is encryption and
the Noise handshake hash, which the later phases (membership proof, identity
binding) sign and MAC so that nothing they send can be replayed into another
session or reflected to its sender. Wire format in docs/lan-protocol.md.

Every read has a deadline and every length is checked before allocation; the
largest message accepted starts small (`PREAUTH_MESSAGE`) and is raised only
once the peer has proved that it shares a community.
"""

from __future__ import annotations

import asyncio
import struct

from noise.connection import NoiseConnection

from p2p.errors import (
    HandshakeFailed,
    PeerDisconnected,
    PeerMisbehaved,
    PeerTimeout,
    PeerUnreachable,
)

PROTOCOL = b"Noise_NN_25519_ChaChaPoly_SHA256"
PROLOGUE = b"p2p/lan/v2"
MAX_FRAME = 65535
TAG_LEN = 16
MAX_CHUNK = MAX_FRAME - TAG_LEN
MAX_MESSAGE = 16 * 1024 * 1024
PREAUTH_MESSAGE = 64 * 1024  # largest message before a shared community is proven
HANDSHAKE_TIMEOUT = 5.0  # server: Noise + membership + identity, from accepting
CONNECT_HANDSHAKE_TIMEOUT = 15.0  # client: the same from connecting, which includes the
# time a busy server's listen queue holds the connection before accepting it


class Channel:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        noise: NoiseConnection,
        initiator: bool,
        io_timeout: float,
        max_message: int = PREAUTH_MESSAGE,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._noise = noise
        self.initiator = initiator
        self.io_timeout = io_timeout
        self.max_message = max_message
        self.handshake_hash: bytes = noise.get_handshake_hash()
        self.peer_key: bytes = b""  # set by the session once the peer proved its identity
        self._send_lock = asyncio.Lock()

    @property
    def role(self) -> bytes:
        """b"I" for the side that connected, b"R" for the side that accepted."""
        return b"I" if self.initiator else b"R"

    @property
    def peer_role(self) -> bytes:
        return b"R" if self.initiator else b"I"

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
            raise PeerDisconnected(
                f"the peer disconnected {what}; nothing partial was kept"
            ) from exc
        except (ConnectionError, OSError) as exc:
            raise PeerDisconnected(
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
        if len(data) > MAX_MESSAGE:
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
                raise PeerDisconnected("the connection to the peer broke while sending") from exc

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
    noise.set_prologue(PROLOGUE)
    noise.start_handshake()
    return noise


async def handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    initiator: bool,
    io_timeout: float,
) -> Channel:
    """Phase HANDSHAKE: `-> e`, `<- e, ee`, no payloads."""
    noise = _noise(initiator)
    try:
        if initiator:
            _raw_write(writer, noise.write_message())
            noise.read_message(await _raw_read(reader, io_timeout))
        else:
            noise.read_message(await _raw_read(reader, io_timeout))
            _raw_write(writer, noise.write_message())
        await writer.drain()
    except (HandshakeFailed, PeerTimeout):
        raise
    except (ConnectionError, OSError) as exc:
        raise HandshakeFailed("the connection broke during the handshake") from exc
    except Exception as exc:  # noqa: BLE001 - noise raises many types on bad input
        raise HandshakeFailed() from exc
    if not noise.handshake_finished:
        raise HandshakeFailed()
    return Channel(reader, writer, noise, initiator, io_timeout)


async def open_channel(
    host: str,
    port: int,
    *,
    io_timeout: float = 30.0,
    connect_timeout: float = 10.0,
) -> Channel:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), connect_timeout
        )
    except (TimeoutError, ConnectionError, OSError) as exc:
        raise PeerUnreachable(f"could not connect to {host}:{port}") from exc
    try:
        async with asyncio.timeout(CONNECT_HANDSHAKE_TIMEOUT):
            return await handshake(reader, writer, True, io_timeout)
    except TimeoutError as exc:
        writer.close()
        raise PeerTimeout("the peer did not complete the handshake in time") from exc
    except BaseException:
        writer.close()
        raise
