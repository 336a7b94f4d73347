"""Who may change a community document, judged from its own history.

Rule 1 (role at the time): a change by anyone but the owner is valid only if
its author had the role `moderator` and no ban in the document as it stood at
the change's dependencies.

Rule 1 alone lets a demoted moderator choose the past: they build new changes
on their pre-demotion history, where they were still a moderator. Rule 2
(demotion bounds what follows): a change L that takes the moderator role from
M (M was an unbanned moderator at L's dependencies and is not one at L
itself: demoted, or banned) is a demotion of M. It allows only what its
author had seen of M: every change by M in the community document that is
neither an ancestor of L nor a descendant of L is refused. (A descendant of
L is judged by rule 1 against a history that contains the demotion.) Because
each author's changes form one chain (`p2p/sequence.py`), "not an ancestor
of L" is "sequence number above the highest of M's changes beneath L".

Both rules depend only on the set of changes, so every peer reaches the same
verdict whatever the arrival order; a change accepted before its author's
demotion arrived is set aside when the demotion arrives.
"""

from __future__ import annotations

from collections.abc import Mapping

from automerge.core import ROOT, Document, ObjType

from p2p.chunk import RawChange

MODERATOR = "moderator"
REFUSED = "only the owner and moderators may change community settings"
AFTER_DEMOTION = "made by a moderator after their demotion or ban"


def role_at(doc: Document, heads: list[bytes], member: bytes) -> tuple[str | None, bool]:
    """A member's role and banned flag as the document stood at `heads`."""
    if not heads:
        return None, False
    role = None
    roles = doc.get(ROOT, "roles", heads)
    if roles is not None and isinstance(roles[0], ObjType):
        got = doc.get(roles[1], member.hex(), heads)
        if got is not None and not isinstance(got[0], ObjType):
            role = str(got[0][1])
    banned = False
    bans = doc.get(ROOT, "bans", heads)
    if bans is not None and isinstance(bans[0], ObjType):
        banned = doc.get(bans[1], member.hex(), heads) is not None
    return role, banned


def _moderators_at(doc: Document, heads: list[bytes]) -> list[bytes]:
    if not heads:
        return []
    roles = doc.get(ROOT, "roles", heads)
    if roles is None or not isinstance(roles[0], ObjType):
        return []
    out = []
    for key in doc.keys(roles[1], heads):
        got = doc.get(roles[1], key, heads)
        if got is None or isinstance(got[0], ObjType) or got[0][1] != MODERATOR:
            continue
        try:
            member = bytes.fromhex(key)
        except ValueError:
            continue
        if not role_at(doc, heads, member)[1]:
            out.append(member)
    return out


def _ancestors(h: bytes, every: Mapping[bytes, RawChange]) -> set[bytes]:
    seen: set[bytes] = set()
    stack = [h]
    while stack:
        for d in every[stack.pop()].deps:
            if d in every and d not in seen:
                seen.add(d)
                stack.append(d)
    return seen


def offenders(doc: Document, every: Mapping[bytes, RawChange], owner: bytes) -> dict[bytes, str]:
    """Changes of `every` (all of the community document, as loaded in `doc`)
    that the two rules refuse, with the reason."""
    bad: dict[bytes, str] = {}
    may_demote: list[bytes] = []
    for h, c in every.items():
        if c.actor == owner:
            may_demote.append(h)
            continue
        role, banned = role_at(doc, list(c.deps), c.actor)
        if role != MODERATOR or banned:
            bad[h] = REFUSED
        else:
            may_demote.append(h)
    by_actor: dict[bytes, list[RawChange]] = {}
    for c in every.values():
        if c.actor != owner:
            by_actor.setdefault(c.actor, []).append(c)
    for h in may_demote:
        if h in bad:
            continue
        c = every[h]
        for member in _moderators_at(doc, list(c.deps)):
            role, banned = role_at(doc, [h], member)
            if role == MODERATOR and not banned:
                continue
            theirs = by_actor.get(member, [])
            if not theirs:
                continue
            below = _ancestors(h, every)
            limit = max((x.seq for x in theirs if x.hash in below), default=0)
            for x in theirs:
                if x.seq > limit and x.hash not in bad and h not in _ancestors(x.hash, every):
                    bad[x.hash] = AFTER_DEMOTION
    return bad
