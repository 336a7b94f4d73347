"""A community as a reader sees it: the merge of its members' feeds, threaded,
minus what moderators hid and what banned members wrote.

The signed data stays in the store; hiding and banning only change this view.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from p2p import index
from p2p.community import Community, state
from p2p.documents import to_py
from p2p.home import Home
from p2p.index.view import COLUMNS as _COLUMNS
from p2p.index.view import View


def _describe(home: Home, posts: Iterable[dict]) -> None:
    """Attachments as a reader is told about them (what has arrived changes over time)."""
    for p in posts:
        raw = p["attachments"]
        if raw:
            from p2p.blobs.attach import describe_all  # image support loads only when needed

            p["attachments"] = describe_all(home, raw)
        else:
            p["attachments"] = []


def _collect(home: Home, community: Community) -> list[dict]:
    """Every post as a flat list, reactions attached, each marked with `removed`:
    None, "hidden" (by a moderator) or "banned" (its author is)."""
    view = View(home.docs, community.id)
    posts: dict[str, dict] = {}
    for row in view.db.execute(
        f"SELECT {_COLUMNS} FROM ix_posts INDEXED BY ix_posts_key WHERE community = ? ORDER BY id",
        (view.cnum,),
    ):
        # of two posts with one id, the later author's wins, as ever (hex compares as bytes)
        seen = posts.get(row[2])
        if seen is None or view.member[row[0]].hex() > seen["author"]:
            posts[row[2]] = view.post(row)
    _describe(home, posts.values())
    view.react(
        posts,
        view.db.execute(
            "SELECT reactor, target, emoji FROM ix_reactions WHERE community = ?"
            " ORDER BY reactor, target, emoji",
            (community.id,),
        ),
    )
    return sorted(posts.values(), key=lambda p: (p["ts"], p["id"]))


def all_posts(home: Home, community: Community, moderated: bool = False) -> list[dict]:
    """Every post as a flat list (unmoderated unless asked), reactions attached."""
    posts = _collect(home, community)
    return [p for p in posts if not p["removed"]] if moderated else posts


def _placeholder(p: dict) -> dict:
    """What stays of a removed post that others replied to: its place in the thread."""
    return {
        **p,
        "author": None,
        "author_name": None,
        "fingerprint": None,
        "text": "",
        "edited": None,
        "reactions": {},
        "attachments": [],
    }


MAX_DEPTH = 12  # deeper replies are shown beside their parent, not below it


def thread(home: Home, community: Community) -> list[dict]:
    """Top-level posts in time order, each with its `replies` nested.

    Hidden posts and posts by banned members are left out; where others replied
    to one, a placeholder (text empty, `removed` set) keeps the replies in their
    thread instead of scattering them to the top level. Nesting stops at
    MAX_DEPTH and a parent cycle (only a forger's own posts can form one) is cut,
    so no reply chain a member writes can break the view.
    """
    by_id = {p["id"]: {**p, "replies": []} for p in _collect(home, community)}
    under = _placement(by_id)
    roots = []
    for pid, p in by_id.items():
        if under[pid] is None:
            roots.append(p)
        else:
            by_id[under[pid]]["replies"].append(p)
    return _prune(roots)


def _placement(by_id: dict[str, dict]) -> dict[str, str | None]:
    """Which post each post is shown under (None: top level), and how deep."""
    under: dict[str, str | None] = {}
    depth: dict[str, int] = {}

    def parent(pid: str) -> str | None:
        par = by_id[pid]["parent"]
        return par if isinstance(par, str) and par in by_id else None

    for start in by_id:
        path: list[str] = []
        seen: set[str] = set()
        cur: str | None = start
        while cur is not None and cur not in depth:
            if cur in seen:  # a cycle: cut it here
                under[cur], depth[cur] = None, 0
                break
            seen.add(cur)
            path.append(cur)
            cur = parent(cur)
        for pid in reversed(path):
            if pid in depth:
                continue
            par = parent(pid)
            if par is None:
                under[pid], depth[pid] = None, 0
            elif depth[par] < MAX_DEPTH:
                under[pid], depth[pid] = par, depth[par] + 1
            else:
                under[pid], depth[pid] = under[par], depth[par]
    return under


def _prune(posts: list[dict]) -> list[dict]:
    out = []
    for p in posts:
        p["replies"] = _prune(p["replies"])
        if not p["removed"]:
            out.append(p)
        elif p["replies"]:
            out.append(_placeholder(p))
    return out


def _careful(home: Home, community: Community) -> bool:
    """Whether a reply cycle or two posts sharing an id exist (only forgers make either):
    then threads are built from the whole community at once, exactly as ever."""
    index.refresh(home.docs, community.id)  # flags come from indexing: index first
    return bool(index.flags(home.store.db, community.id))


CHUNK = 500  # ids per IN (...) list


def _trees(home: Home, view: View, roots: list[tuple]) -> list[list[dict]]:
    """Threads built from their top posts' rows, a page at a time (a few queries per
    page, not per thread); each is [] when nothing of it is shown."""
    root_of = {r[2]: r[2] for r in roots}
    groups: dict[str, list[tuple]] = {r[2]: [r] for r in roots}
    frontier = list(root_of)
    while frontier:
        batch, frontier = frontier[:CHUNK], frontier[CHUNK:]
        marks = ",".join("?" * len(batch))
        for r in view.db.execute(
            f"SELECT {_COLUMNS} FROM ix_posts INDEXED BY ix_posts_by_parent"
            f" WHERE community = ? AND orphan = 0 AND parent IN ({marks})",
            (view.cnum, *batch),
        ).fetchall():
            top = root_of[r[4]]
            root_of[r[2]] = top
            groups[top].append(r)
            frontier.append(r[2])
    posts: dict[str, dict] = {}
    for rows in groups.values():
        for r in rows:
            posts[r[2]] = view.post(r)
    _describe(home, posts.values())
    ids = list(posts)
    found: list[tuple] = []
    for i in range(0, len(ids), CHUNK):
        found += view.reactions(ids[i : i + CHUNK]).fetchall()
    found.sort(key=lambda r: (r[0], r[1], r[2]))
    view.react(posts, found)
    out = []
    for root in roots:
        rows = sorted(groups[root[2]], key=lambda r: (r[3], r[2]))
        by_id = {r[2]: {**posts[r[2]], "replies": []} for r in rows}
        under = _placement(by_id)
        top_level = []
        for pid, p in by_id.items():
            if under[pid] is None:
                top_level.append(p)
            else:
                by_id[under[pid]]["replies"].append(p)
        out.append(_prune(top_level))
    return out


def _roots(view: View, newest_first: bool) -> Any:
    """A cursor over top posts, in thread order (or newest first)."""
    order = "DESC" if newest_first else "ASC"
    return view.db.execute(
        f"SELECT {_COLUMNS} FROM ix_posts INDEXED BY ix_posts_roots"
        f" WHERE community = ? AND orphan = 1 ORDER BY ts {order}, id {order}",
        (view.cnum,),
    )


def latest(home: Home, community: Community, last: int) -> tuple[list[dict], int]:
    """The `last` most recent threads (as `thread` shows them) and how many older
    threads were left out; reads only what it shows (plus a count)."""
    if last <= 0 or _careful(home, community):
        posts = thread(home, community)
        older = max(0, len(posts) - last) if last > 0 else 0
        return posts[older:], older
    view = View(home.docs, community.id)
    shown: list[dict] = []
    roots = _roots(view, newest_first=True)
    while len(shown) < last:
        page = roots.fetchmany(last - len(shown) + 2)
        if not page:
            break
        for tree in _trees(home, view, page):
            shown += tree
    shown = shown[:last]
    shown.reverse()
    return shown, _count_threads(view) - len(shown)


def _count_threads(view: View) -> int:
    """Threads shown in all: top posts not removed, plus removed ones with a shown reply."""
    banned = sorted(view.banned_nums)
    bmarks = ",".join("?" * len(banned))
    hidden = "id IN (SELECT key FROM ix_moderation WHERE community = ? AND what = 'hidden')"
    removed = f"(author IN ({bmarks}) OR {hidden})" if banned else hidden
    kept = view.db.execute(
        f"SELECT count(*) FROM ix_posts INDEXED BY ix_posts_roots"
        f" WHERE community = ? AND orphan = 1 AND NOT {removed}",
        (view.cnum, *banned, view.cid),
    ).fetchone()[0]
    # removed top posts that keep a place: only those with replies can (one set-wise query),
    # and only their replies are looked at
    gone = view.db.execute(
        "SELECT r.id FROM ix_posts r INDEXED BY ix_posts_roots"
        f" WHERE r.community = ? AND r.orphan = 1 AND {removed.replace('id IN', 'r.id IN')}"
        " AND EXISTS (SELECT 1 FROM ix_posts c INDEXED BY ix_posts_by_parent"
        " WHERE c.community = r.community AND c.parent = r.id AND c.orphan = 0)",
        (view.cnum, *banned, view.cid),
    ).fetchall()
    for (pid,) in gone:
        if _has_reply(view, pid):
            kept += 1
    return kept


def _has_reply(view: View, pid: str) -> bool:
    """Whether anything below a removed post is shown (so it stays as a placeholder)."""
    frontier = [pid]
    while frontier:
        cur = frontier.pop()
        for author, child in view.db.execute(
            "SELECT author, id FROM ix_posts INDEXED BY ix_posts_by_parent"
            " WHERE community = ? AND orphan = 0 AND parent = ?",
            (view.cnum, cur),
        ):
            if author not in view.banned_nums and child not in view.hidden:
                return True
            frontier.append(child)
    return False


def stream(home: Home, community: Community) -> Iterator[dict]:
    """Every thread in order, one at a time (what `thread` returns, without holding it)."""
    if _careful(home, community):
        yield from thread(home, community)
        return
    view = View(home.docs, community.id)
    roots = _roots(view, newest_first=False)
    while page := roots.fetchmany(256):
        for tree in _trees(home, view, page):
            yield from tree


def shared_state(home: Home, community: Community) -> dict:
    return state(home, community)


def author_doc(home: Home, doc_id: bytes) -> dict:
    doc = home.docs.load(doc_id)
    return to_py(doc) if doc is not None else {}
