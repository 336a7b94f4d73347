"""Each author's changes to a document form one chain; forks are resolved the same everywhere.

Automerge numbers an actor's changes 1, 2, 3... and its loader assumes that
each change follows its actor's previous one: a gap panics, a duplicate
refuses the whole document, and a change that skips its predecessor in its
dependencies loads once but saves into bytes that never load again. So before
the binding sees anything, every change must have `seq` one more than its
author's previous change and list that change among its dependencies
(the first, `seq` 1, lists none of its author's).

Two different changes with the same author and `seq` are a **fork** (a
hostile author, or one identity restored on a second device and used on
both). Rule, the same on every peer whatever the arrival order: starting from
`seq` 1, at each `seq` keep the change with the lowest hash among those that
follow the kept change before it; every other change of that author at that
point, and everything that depends on it, is set aside. The kept branch is
therefore a function of the set of changes seen, never of their order; a peer
that kept the other branch switches when it meets the lower hash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from p2p.chunk import RawChange


@dataclass(frozen=True)
class Fork:
    """Two signed changes by one author with the same sequence number."""

    actor: bytes
    seq: int
    kept: bytes
    dropped: bytes


@dataclass
class Outcome:
    keep: list[bytes]  # of the candidates, in the order given
    rejected: dict[bytes, str] = field(default_factory=dict)
    lost: set[bytes] = field(default_factory=set)  # set aside by a fork (known or candidate)
    forks: list[Fork] = field(default_factory=list)


def structure_error(c: RawChange, every: Mapping[bytes, RawChange]) -> str | None:
    """Why `c` cannot follow its author's earlier changes, or None."""
    seq = c.seq
    if seq < 1:
        return "change has no valid sequence number"
    # one plain loop: this runs once per change of every document received
    own: list[int] = []
    for d in c.deps:
        dep = every.get(d)
        if dep is None:
            return None  # judged by whoever holds its dependencies (e.g. `p2p verify` of a delta)
        if dep.actor == c.actor:
            own.append(dep.seq)
    if own and max(own) >= seq:
        return "change depends on a later change of its own author"
    if seq == 1:
        return None
    if seq - 1 not in own:
        return "change does not build on its author's previous change (sequence gap)"
    return None


def descendants(roots: Iterable[bytes], every: Mapping[bytes, RawChange]) -> set[bytes]:
    """`roots` and every change of `every` that depends on one of them."""
    children: dict[bytes, list[bytes]] = {}
    for h, c in every.items():
        for d in c.deps:
            children.setdefault(d, []).append(h)
    out = set(roots)
    stack = list(out)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in out:
                out.add(child)
                stack.append(child)
    return out


def check(
    known: Mapping[bytes, RawChange], order: list[bytes], pool: Mapping[bytes, RawChange]
) -> Outcome:
    """Judge candidate changes `order` (dependency order, from `pool`) against `known`.

    Known changes are trusted to be well formed (they loaded); forks may still
    set some of them aside (`Outcome.lost`), which means rebuilding the document.
    """
    every: dict[bytes, RawChange] = dict(known)
    rejected: dict[bytes, str] = {}
    slots: dict[tuple[bytes, int], list[bytes]] = {}
    for h, c in known.items():
        slots.setdefault((c.actor, c.seq), []).append(h)
    for h in order:
        c = pool[h]
        if rejected and any(d in rejected for d in c.deps):
            rejected[h] = "depends on a rejected change"
            continue
        every[h] = c
        reason = structure_error(c, every)
        if reason:
            rejected[h] = reason
            del every[h]
            continue
        slots.setdefault((c.actor, c.seq), []).append(h)

    forked = sorted({actor for (actor, _), hs in slots.items() if len(hs) > 1})
    invalid: set[bytes] = set()
    while True:
        lost, forks, kept = _resolve(forked, slots, every, invalid)
        # a change kept at its slot but lost through another author's fork
        # beneath it was never a valid candidate: decide again without it
        fallen = kept & lost
        if not fallen:
            break
        invalid |= fallen
    keep = [h for h in order if h not in rejected and h not in lost]
    return Outcome(keep, rejected, lost, forks)


def _resolve(
    forked: list[bytes],
    slots: Mapping[tuple[bytes, int], list[bytes]],
    every: Mapping[bytes, RawChange],
    invalid: set[bytes],
) -> tuple[set[bytes], list[Fork], set[bytes]]:
    """One pass of the fork rule; returns (set aside, forks, changes kept at a fork)."""
    lost: set[bytes] = descendants(invalid, every) if invalid else set()
    forks: list[Fork] = []
    kept: set[bytes] = set()
    for actor in forked:
        top = max(s for (a, s) in slots if a == actor)
        chosen: bytes | None = None
        for s in range(1, top + 1):
            here = [h for h in slots.get((actor, s), []) if h not in lost]
            if not here:
                break
            if len(here) > 1:
                # one that builds on another with the same seq is malformed, whatever wins
                later = set().union(*(descendants([h], every) - {h} for h in here))
                if later & set(here):
                    lost |= descendants(later & set(here), every)
                    here = [h for h in here if h not in lost]
            fits = [h for h in here if s == 1 or (chosen is not None and chosen in every[h].deps)]
            if not fits:
                lost |= descendants(here, every)
                break
            chosen = min(fits)
            kept.add(chosen)
            dropped = [h for h in here if h != chosen]
            for h in sorted(dropped):
                forks.append(Fork(actor, s, chosen, h))
            lost |= descendants(dropped, every)
    return lost, forks, kept
