"""Finding peers on the local network with DNS-SD (python-zeroconf, asyncio API).

An announcement says only: a p2p peer listens at this address and port. Its
instance name, host name and TXT token are random and change on every
rotation, so a passive listener cannot tell who is there or follow a device
from one rotation to the next by what it announces. Zeroconf is always bound
to one interface (its IPv4 address, or for an interface with only an IPv6
link-local address, its index), never to every interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from p2p import atomic

SERVICE_TYPE = "_p2psync._tcp.local."
FORMAT = "2"  # the LAN protocol version (docs/lan-protocol.md)
ROTATE_EVERY = 15 * 60.0


@dataclass(frozen=True)
class Peer:
    host: str
    port: int
    token: str
    name: str


def _scope(address: str) -> tuple[str, int | None]:
    """`fe80::1%wlan0` -> ("fe80::1", index of wlan0); an IPv4 address as is."""
    ip, _, zone = address.partition("%")
    if not zone:
        return ip, None
    return ip, int(zone) if zone.isdigit() else socket.if_nametoindex(zone)


def _zeroconf(address: str) -> AsyncZeroconf:
    """Bound to one interface: by address for IPv4, by index for IPv6 link-local."""
    ip, index = _scope(address)
    if ":" in ip:
        if index is None:
            raise ValueError(f"{address!r}: an IPv6 link-local address needs its %interface")
        return AsyncZeroconf(interfaces=[index], ip_version=IPVersion.V6Only)
    return AsyncZeroconf(interfaces=[ip], ip_version=IPVersion.V4Only)


class Announcer:
    """Announces this peer; rotates its random name and token periodically."""

    def __init__(
        self,
        address: str,
        port: int,
        rotate_every: float | None = ROTATE_EVERY,
        token_file: Path | None = None,
    ):
        self.token_file = token_file
        self.address = address
        self.port = port
        self.rotate_every = rotate_every
        self.token = ""
        self.name = ""
        self._zc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._zc = _zeroconf(self.address)
        await self._register()
        if self.rotate_every:
            self._task = asyncio.create_task(self._rotating())

    async def _register(self) -> None:
        assert self._zc is not None
        self.token = os.urandom(8).hex()
        label = os.urandom(6).hex()
        self.name = f"{label}.{SERVICE_TYPE}"
        self._info = self._service(f"{label}.local.")
        await (await self._zc.async_register_service(self._info))
        if self.token_file is not None:
            atomic.write_bytes(self.token_file, self.token.encode(), force=True)  # 0600

    def _service(self, server: str | None) -> AsyncServiceInfo:
        ip, index = _scope(self.address)
        return AsyncServiceInfo(
            SERVICE_TYPE,
            self.name,
            parsed_addresses=[ip],
            port=self.port,
            properties={"v": FORMAT, "t": self.token},
            server=server,
            interface_index=index,
        )

    @property
    def zeroconf(self) -> Zeroconf | None:
        return self._zc.zeroconf if self._zc is not None else None

    async def new_token(self) -> None:
        """Announce a fresh random token (same name): peers browsing take it as
        "this peer has new content" and sync again."""
        if self._zc is None or self._info is None:
            return
        self.token = os.urandom(8).hex()
        self._info = self._service(self._info.server)
        await (await self._zc.async_update_service(self._info))
        if self.token_file is not None:
            atomic.write_bytes(self.token_file, self.token.encode(), force=True)  # 0600

    async def _unregister(self) -> None:
        if self._zc is not None and self._info is not None:
            await (await self._zc.async_unregister_service(self._info))
            self._info = None

    async def rotate(self) -> None:
        await self._unregister()
        await self._register()

    async def _rotating(self) -> None:
        assert self.rotate_every
        while True:
            await asyncio.sleep(self.rotate_every)
            await self.rotate()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._unregister()
        if self._zc is not None:
            await self._zc.async_close()
            self._zc = None
        if self.token_file is not None:
            self.token_file.unlink(missing_ok=True)


def own_tokens(token_file: Path) -> frozenset[str]:
    """The tokens a `serve` of this same home announces, so `sync` skips itself."""
    try:
        return frozenset(token_file.read_text().split())
    except OSError:
        return frozenset()


async def resolve(zc: Zeroconf, name: str, timeout_ms: int = 1500) -> Peer | None:
    """A peer's address, port and token, or None if it does not answer or speaks
    another protocol version."""
    info = AsyncServiceInfo(SERVICE_TYPE, name)
    if not await info.async_request(zc, timeout_ms):
        return None
    props = {k.decode(): (v or b"").decode(errors="replace") for k, v in info.properties.items()}
    addresses = info.parsed_addresses(IPVersion.V4Only) or [
        a for a in info.parsed_scoped_addresses(IPVersion.V6Only) if "%" in a
    ]
    if props.get("v") != FORMAT or not addresses or not info.port:
        return None
    return Peer(addresses[0], info.port, props.get("t", ""), name)


async def browse_all(
    interfaces: list[str], timeout: float = 5.0, skip_tokens: frozenset[str] = frozenset()
) -> list[Peer]:
    """Peers announced on any of these interfaces' networks, once each."""
    found = await asyncio.gather(*(browse(i, timeout, skip_tokens) for i in interfaces))
    out: dict[tuple[str, int], Peer] = {}
    for peers in found:
        for p in peers:
            out.setdefault((p.host, p.port), p)
    return list(out.values())


async def browse(
    interface: str, timeout: float = 5.0, skip_tokens: frozenset[str] = frozenset()
) -> list[Peer]:
    """Peers announced on `interface`'s network within `timeout` seconds."""
    azc = _zeroconf(interface)
    names: set[str] = set()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Added:
            names.add(name)
        elif state_change is ServiceStateChange.Removed:
            names.discard(name)

    browser = AsyncServiceBrowser(azc.zeroconf, [SERVICE_TYPE], handlers=[on_change])
    peers: dict[str, Peer] = {}
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            for name in list(names - set(peers)):
                peer = await resolve(azc.zeroconf, name)
                if peer is None or peer.token in skip_tokens:
                    continue
                peers[name] = peer
            await asyncio.sleep(0.1)
    finally:
        await browser.async_cancel()
        await azc.async_close()
    return [p for n, p in peers.items() if n in names]
