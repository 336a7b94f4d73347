"""The addresses this machine has on its local networks, found without any route.

An offline Wi-Fi (a hotspot with no uplink) has no default route, so asking
the routing table "which address would reach the internet" finds nothing. We
list the interfaces instead (ifaddr, which zeroconf already depends on) and
keep every one that is up and not loopback: its IPv4 addresses (including
169.254/16, which ad-hoc networks use) and its IPv6 link-local address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import ifaddr

IFF_UP = 0x1
IFF_LOOPBACK = 0x8


@dataclass(frozen=True)
class Address:
    ip: str
    interface: str
    scope_id: int = 0  # the interface index, for an IPv6 link-local address

    @property
    def ipv6(self) -> bool:
        return ":" in self.ip

    @property
    def host(self) -> str:
        """What to bind or connect to (`fe80::1%wlan0` for a link-local address)."""
        return f"{self.ip}%{self.interface}" if self.ipv6 else self.ip


def _flags(name: str) -> int | None:
    try:
        return int(Path(f"/sys/class/net/{name}/flags").read_text().strip(), 16)
    except (OSError, ValueError):
        return None  # not Linux: trust ifaddr's list


def lan_addresses(ipv6: bool = True) -> list[Address]:
    """Every IPv4 address and IPv6 link-local address of every up, non-loopback
    interface, IPv4 first."""
    v4: list[Address] = []
    v6: list[Address] = []
    for adapter in ifaddr.get_adapters():
        flags = _flags(adapter.name)
        if flags is not None and (not flags & IFF_UP or flags & IFF_LOOPBACK):
            continue
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                if not ipaddress.IPv4Address(ip.ip).is_loopback:
                    v4.append(Address(ip.ip, adapter.name))
            elif ipv6:
                addr, _flow, scope = ip.ip
                parsed = ipaddress.IPv6Address(addr.split("%")[0])
                if parsed.is_link_local:
                    v6.append(Address(str(parsed), adapter.name, scope or adapter.index or 0))
    return v4 + v6
