"""Derived, rebuildable indexes of what the documents say, kept in the store.

Views (feed, chat, direct messages, members, search) read these tables instead
of loading and merging every Automerge document of a community, so they cost
what they show. The documents stay the source of truth: the indexes are
updated in the same transaction as every stored edit (an observer registered
with `p2p.documents`), brought up to date on first use, and can be rebuilt
from the documents at any time (`p2p index rebuild`).
"""

from __future__ import annotations

from p2p import documents
from p2p.index.update import (
    bad_entries,
    flags,
    forget_community,
    observe,
    rebuild,
    refresh,
    to_read,
)

if observe not in documents.OBSERVERS:
    documents.OBSERVERS.append(observe)

__all__ = ["bad_entries", "flags", "forget_community", "rebuild", "refresh", "to_read"]
