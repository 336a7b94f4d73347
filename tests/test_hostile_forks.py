"""Property: the fork rule keeps the same changes whatever the arrival order.

Synthetic change headers (the rule reads only hash, actor, seq and deps) form
random trees of one author's changes with forks at random points; they are
delivered to two peers in different orders and batch splits, each peer
applying `sequence.check` the way the acceptor does (what is set aside is
kept apart and stays a candidate for every later decision).
Both must end with the same set, and it must be one chain per author.
"""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from p2p import sequence, signing
from p2p.chunk import RawChange


def make_tree(shape: list[tuple[int, int]]) -> dict[bytes, RawChange]:
    """`shape[i] = (parent index or -1, actor)`; seq follows the same-actor parent."""
    out: list[RawChange] = []
    for i, (parent, actor) in enumerate(shape):
        deps: tuple[bytes, ...] = ()
        seq = 1
        if 0 <= parent < len(out):
            p = out[parent]
            deps = (p.hash,)
            # on its own author's change it follows it; on another's it is a first change
            seq = p.seq + 1 if p.actor == bytes([actor]) * 32 else 1
        h = hashlib.sha256(repr((i, deps, actor, seq)).encode()).digest()
        out.append(RawChange(h, bytes([actor]) * 32, seq, deps, b""))
    return {c.hash: c for c in out}


def deliver(every: dict[bytes, RawChange], batches: list[list[bytes]]) -> set[bytes]:
    """What a peer ends with after receiving `batches` in turn, as the acceptor
    does it: changes set aside stay candidates for the next decision."""
    known: dict[bytes, RawChange] = {}
    held: dict[bytes, RawChange] = {}
    pending: dict[bytes, RawChange] = {}
    for batch in batches:
        for h in batch:
            if h not in known and h not in held:
                pending[h] = every[h]
        pool = {**pending, **held}
        present = set(known)
        order = []
        for h in signing.topo_order(pool):
            if all(d in present for d in pool[h].deps):
                order.append(h)
                present.add(h)
        out = sequence.check(known, order, pool)
        assert not out.rejected
        for h in out.lost:
            held[h] = known.pop(h) if h in known else pool[h]
        for h in out.keep:
            known[h] = pool[h]
            held.pop(h, None)
        for h in order:
            pending.pop(h, None)
    return set(known)


shapes = st.lists(st.tuples(st.integers(-1, 12), st.integers(1, 2)), min_size=1, max_size=14).map(
    lambda xs: [(p if p < i else -1, a) for i, (p, a) in enumerate(xs)]
)


@settings(max_examples=150, deadline=None)
@given(shape=shapes, seed=st.randoms(use_true_random=False), cuts=st.integers(1, 4))
def test_same_result_whatever_the_order(shape, seed, cuts) -> None:
    every = make_tree(shape)
    # a valid tree: each change's same-author parent has seq - 1 (else drop it)
    every = {
        h: c for h, c in every.items() if sequence.structure_error(c, every) is None and c.seq >= 1
    }
    every = {h: c for h, c in every.items() if all(d in every for d in c.deps)}
    hashes = sorted(every)
    a = hashes[:]
    b = hashes[:]
    seed.shuffle(b)
    size = max(1, len(b) // cuts)
    one = deliver(every, [a])
    two = deliver(every, [b[i : i + size] for i in range(0, len(b), size)])
    assert one == two
    slots = {(every[h].actor, every[h].seq) for h in one}
    assert len(slots) == len(one)  # one chain per author
