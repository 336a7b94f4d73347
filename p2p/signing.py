"""Signatures on Automerge changes, and which of them a batch needs.

`sig = Ed25519(author, TAG || doc_id || change_hash)`. Because a change hash
commits to its dependencies, a signature on an author's change vouches for
that author's earlier changes beneath it; we use that only along the same
author (a signature never vouches for someone else's change). One signature
per author frontier instead of one per change is what makes bulk verification
cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from p2p.chunk import RawChange
from p2p.identity import Identity, verify

TAG = b"p2p/change/v1\x00"

Sig = tuple[bytes, bytes, bytes]  # (change hash, signer public key, signature)


def message(doc_id: bytes, change_hash: bytes) -> bytes:
    return TAG + doc_id + change_hash


def sign(identity: Identity, doc_id: bytes, change_hash: bytes) -> Sig:
    return (change_hash, identity.public_key, identity.sign(message(doc_id, change_hash)))


def check(doc_id: bytes, sig: Sig) -> bool:
    change_hash, signer, signature = sig
    return verify(signer, signature, message(doc_id, change_hash))


def topo_order(changes: Mapping[bytes, RawChange]) -> list[bytes]:
    """Hashes with every change after its dependencies inside the set (the given order
    when it already is one, as a document's changes are: one pass instead of a sort)."""
    seen: set[bytes] = set()
    for h, c in changes.items():
        for d in c.deps:
            if d not in seen and d in changes:
                break
        else:
            seen.add(h)
            continue
        break
    else:
        return list(changes)
    indegree = {h: 0 for h in changes}
    children: dict[bytes, list[bytes]] = {}
    for h, c in changes.items():
        for d in c.deps:
            if d in changes:
                indegree[h] += 1
                children.setdefault(d, []).append(h)
    ready = [h for h, n in indegree.items() if n == 0]
    order: list[bytes] = []
    while ready:
        h = ready.pop()
        order.append(h)
        for child in children.get(h, ()):
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    return order  # a cycle (impossible with real hashes) leaves changes out


def covered(
    order: list[bytes], changes: Mapping[bytes, RawChange], signed: Iterable[tuple[bytes, bytes]]
) -> set[bytes]:
    """Changes vouched for by a valid signature of their own author.

    `signed` holds (change hash, signer) pairs whose signatures were checked
    and whose signer is that change's actor.
    """
    bits: dict[bytes, int] = {}
    cover: dict[bytes, int] = {}
    for h, signer in signed:
        if h in changes and changes[h].actor == signer:
            cover[h] = cover.get(h, 0) | (1 << bits.setdefault(signer, len(bits)))
    result: set[bytes] = set()
    for h in reversed(order):
        mask = cover.get(h, 0)
        if not mask:
            continue
        c = changes[h]
        bit = bits.get(c.actor)
        if bit is not None and mask >> bit & 1:
            result.add(h)
        for d in c.deps:
            if d in changes:
                cover[d] = cover.get(d, 0) | mask
    return result


def choose(
    order: list[bytes],
    changes: Mapping[bytes, RawChange],
    lookup: Callable[[bytes, bytes], bytes | None],
) -> list[Sig]:
    """The fewest stored signatures that cover every change being sent.

    Walks from the newest change down; a change not yet covered by its
    author's signature on a descendant contributes its own signature.
    `lookup(hash, signer)` returns a stored signature or None.
    """
    bits: dict[bytes, int] = {}
    cover: dict[bytes, int] = {}
    chosen: list[Sig] = []
    for h in reversed(order):
        c = changes[h]
        bit = 1 << bits.setdefault(c.actor, len(bits))
        mask = cover.get(h, 0)
        if not mask & bit:
            sig = lookup(h, c.actor)
            if sig is not None:
                chosen.append((h, c.actor, sig))
                mask |= bit
        for d in c.deps:
            if d in changes:
                cover[d] = cover.get(d, 0) | mask
    return chosen
