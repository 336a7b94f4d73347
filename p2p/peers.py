"""Peers we have heard from (by bundle or LAN sync) and how to name them."""

from __future__ import annotations

import time

from p2p.community import all_communities, display_name
from p2p.errors import AmbiguousId, UnknownPeer
from p2p.home import Home
from p2p.identity import fingerprint


def known(home: Home) -> list[tuple[bytes, int, str]]:
    return list(home.store.db.execute("SELECT public_key, last_seen, via FROM peers"))


def name_of(home: Home, key: bytes) -> str:
    for c in all_communities(home):
        name = display_name(home, c, key)
        if name:
            return name
    return ""


def resolve_peer(home: Home, text: str) -> bytes:
    """A known peer by fingerprint (prefix), key hex (prefix) or unambiguous name."""
    wanted = text.strip().upper().replace("-", "")
    keys = [k for k, _seen, _via in known(home)]
    found = [
        k
        for k in keys
        if len(wanted) >= 4
        and (
            fingerprint(k).replace("-", "").startswith(wanted) or k.hex().upper().startswith(wanted)
        )
    ]
    if not found:
        found = [k for k in keys if name_of(home, k).upper() == text.strip().upper()]
    if not found:
        raise UnknownPeer(
            f"no known peer matches {text!r}: a peer becomes known once you import "
            "a bundle from them or sync with them"
        )
    if len(found) > 1:
        raise AmbiguousId(f"{text!r} matches {len(found)} peers: give their fingerprint")
    return found[0]


def remember(home: Home, key: bytes, host: str, port: int) -> None:
    """Keep the address a peer was reached at, to try it first next time (for
    networks where multicast, and so discovery, is blocked)."""
    with home.store.transaction() as db:
        db.execute(
            "INSERT OR REPLACE INTO lan_addresses (public_key, host, port, at) VALUES (?, ?, ?, ?)",
            (key, host, port, int(time.time())),
        )


def remembered(home: Home) -> list[tuple[str, int]]:
    """Addresses of peers synced with before, most recent first."""
    return [
        (h, p)
        for h, p in home.store.db.execute("SELECT host, port FROM lan_addresses ORDER BY at DESC")
    ]


def forget_addresses(home: Home) -> int:
    with home.store.transaction() as db:
        return db.execute("DELETE FROM lan_addresses").rowcount
