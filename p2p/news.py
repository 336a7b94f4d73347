"""What an import or a sync brought: new posts, chat messages, direct messages
to us, and new members, counted by comparing documents before and after."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from automerge.core import ROOT, Document

from p2p import dm
from p2p.accept import Incoming, Report
from p2p.community import all_communities
from p2p.docref import CHAT, COMMUNITY, DM, FEED, DocRef
from p2p.home import Home
from p2p.index.patches import WHOLE
from p2p.index.update import last_step

ENTRIES = {FEED: "posts", CHAT: "messages", DM: "boxes"}  # kind -> map of entries


@dataclass
class News:
    posts: int = 0
    chat_messages: int = 0
    direct_messages: int = 0  # sealed to us
    members: int = 0

    def as_json(self) -> dict:
        return {
            "new_posts": self.posts,
            "new_chat_messages": self.chat_messages,
            "new_direct_messages": self.direct_messages,
            "new_members": self.members,
        }


def _entries(doc: Document, kind: str, heads: list[bytes] | None = None) -> set[str]:
    """The keys of a document's map of entries, now or as it stood at `heads`."""
    if heads == []:
        return set()
    try:
        got = doc.get(ROOT, ENTRIES[kind], heads)
        return set(doc.keys(got[1], heads)) if got else set()
    except Exception:  # noqa: BLE001 - a member may have made "posts" anything
        return set()


def _changed(
    doc: Document, kind: str, before: list[bytes], touched: dict[str, set[str]]
) -> set[str] | None:
    """The entries new since `before`, from the keys the index found changed in that
    very step (`update.Step.touched`): a key is new if it is there now and was not
    then. None when that is not known for certain: then every key is compared."""
    top = ENTRIES[kind]
    if WHOLE in touched.get(top, ()):
        return None
    try:
        now, then = doc.get(ROOT, top), doc.get(ROOT, top, before)
        return {
            key
            for key in touched.get(top, ())
            if now is not None
            and doc.get(now[1], key) is not None
            and (then is None or doc.get(then[1], key, before) is None)
        }
    except Exception:  # noqa: BLE001 - a member may have made "posts" anything
        return None


@dataclass
class Tracker:
    """Call `before(batch)` before each batch is accepted, `count(report)` at the end
    (inside the same transaction, so the numbers describe what was committed).

    Only heads are noted before; each changed document is read, as it is and
    as it stood at those heads, from the object the acceptance path committed
    (`seen`, hooked to `Acceptor.committed`), or else loaded once at the end."""

    home: Home
    _before: dict[bytes, tuple[DocRef, list[bytes]]] = field(default_factory=dict)
    _authors: set[tuple[bytes, bytes]] | None = None
    # per document: (its heads when committed, the entries new since `_before`); a
    # feed or chat keeps only how many (a fresh 1M-post import would hold every key)
    _seen: dict[bytes, tuple[list[bytes], set[str] | int]] = field(default_factory=dict)

    def seen(self, ref: DocRef, doc: Document) -> None:
        """A document as the acceptance path committed it (inside the transaction)."""
        noted = self._before.get(ref.id)
        if noted is None:
            return
        heads = doc.get_heads()
        # what the index learnt of this very step, when it can count for us: a new feed
        # or chat the import's helper read whole (all its entries are new), or the keys
        # a step changed
        step = last_step(ref.id, noted[1], heads)
        if step is not None and step.entries is not None and not step.before:
            self._seen[ref.id] = (sorted(heads), step.entries)
            return
        new = None
        if step is not None and step.touched is not None and noted[1]:
            new = _changed(doc, ref.kind, noted[1], step.touched)
        if new is None:
            new = _entries(doc, ref.kind) - _entries(doc, ref.kind, noted[1])
        self._seen[ref.id] = (sorted(heads), new if ref.kind == DM else len(new))

    def before(self, batch: Iterable[Incoming]) -> None:
        if self._authors is None:
            self._authors = {
                (c, o)
                for c, o in self.home.store.db.execute(
                    "SELECT community, owner FROM docs WHERE kind != ?", (COMMUNITY,)
                )
            }
        for inc in batch:
            if inc.ref.kind in ENTRIES and inc.ref.id not in self._before:
                self._before[inc.ref.id] = (inc.ref, self.home.docs.heads(inc.ref.id))

    def count(self, report: Report) -> News:
        news = News()
        joined = {c.id: c for c in all_communities(self.home)}
        for ref, heads in self._before.values():
            now = self.home.docs.heads(ref.id)
            if now == heads:
                continue  # nothing of it was taken
            got = self._seen.get(ref.id)
            new: set[str] | int
            if got is not None and got[0] == now:
                new = got[1]
            else:  # committed by another path, or rolled back since: read it as stored
                doc = self.home.docs.load(ref.id)
                if doc is None:
                    continue
                new = _entries(doc, ref.kind) - _entries(doc, ref.kind, heads)
            if ref.kind == FEED:
                news.posts += new if isinstance(new, int) else len(new)
            elif ref.kind == CHAT:
                news.chat_messages += new if isinstance(new, int) else len(new)
            elif ref.kind == DM and isinstance(new, set) and new and ref.community in joined:
                news.direct_messages += dm.count_for_me(
                    self.home, joined[ref.community], ref.id, ref.owner, new
                )
        authors = self._authors or set()
        for ref in report.new_docs:
            if ref.kind != COMMUNITY and (ref.community, ref.owner) not in authors:
                authors.add((ref.community, ref.owner))
                news.members += 1
        return news
