"""Property tests: any order and split of imports converges; export then import is identity."""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2p import chat, content, exchange, feed, invites
from p2p import community as cm
from p2p.accept import from_record
from p2p.home import Home

AUTHORS = 3

# one action: (author index, kind, text seed, target seed)
actions = st.lists(
    st.tuples(
        st.integers(0, AUTHORS - 1),
        st.sampled_from(["post", "reply", "react", "edit", "chat", "hide"]),
        st.integers(0, 10**6),
        st.integers(0, 10**6),
    ),
    min_size=1,
    max_size=12,
)


def _homes(root: Path) -> tuple[list[Home], cm.Community, bytes]:
    homes = []
    for i in range(AUTHORS):
        h = Home(root / f"author{i}")
        h.create_identity(None)
        cm.set_profile(h, f"Author {i}", None)
        homes.append(h)
    c = cm.create(homes[0], "Village")
    invite = invites.write(homes[0], c)
    for h in homes[1:]:
        invites.join(h, invite)
    return homes, c, invite


def _play(homes: list[Home], c: cm.Community, script) -> list[dict]:
    """Authors act on their own view; snapshots of records are taken along the way."""
    records: list[dict] = [r for h in homes for r in exchange.records_for(h, None)]
    for who, kind, seed, target in script:
        h = homes[who]
        hc = cm.resolve(h, c.hex)
        posts = feed.all_posts(h, hc)
        mine = [p for p in posts if p["author"] == h.public_key.hex()]
        inv = exchange.inventory(h)
        if kind == "post" or not posts:
            content.post(h, hc, f"post {seed}")
        elif kind == "reply":
            content.post(h, hc, f"reply {seed}", reply_to=posts[target % len(posts)]["id"])
        elif kind == "react":
            content.react(h, hc, posts[target % len(posts)]["id"], ["👍", "🎉", "🌱"][seed % 3])
        elif kind == "edit" and mine:
            content.edit(h, hc, mine[target % len(mine)]["id"], f"edited {seed}")
        elif kind == "chat":
            chat.send(h, hc, f"chat {seed}", ["general", "market"][target % 2])
        elif kind == "hide" and who == 0:  # the owner moderates
            cm.hide(h, hc, posts[target % len(posts)]["id"])
        # a delta against the state before this action, and sometimes a full copy
        records += list(exchange.records_for(h, inv))
        if seed % 3 == 0:
            records += list(exchange.records_for(h, None))
        # authors sometimes hear from each other, so replies cross authors
        if seed % 2 == 0:
            other = homes[(who + 1) % len(homes)]
            other.acceptor().accept([from_record(r) for r in exchange.records_for(h, None)])
    return records


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=actions, seed=st.integers(0, 2**32 - 1))
def test_any_order_and_split_converges(script, seed: int) -> None:
    root = Path(tempfile.mkdtemp())
    try:
        homes, c, invite = _homes(root)
        records = _play(homes, c, script)
        rng = random.Random(seed)
        views = []
        invs = []
        for r in range(3):
            h = Home(root / f"reader{r}")
            h.create_identity(None)
            invites.join(h, invite)
            shuffled = records[:]
            rng.shuffle(shuffled)
            cut = sorted(rng.sample(range(len(shuffled) + 1), min(3, len(shuffled) + 1)))
            batches = [shuffled[a:b] for a, b in zip([0, *cut], [*cut, len(shuffled)], strict=True)]
            for batch in batches:
                report = h.acceptor().accept([from_record(x) for x in batch])
                assert report.rejected == []
            hc = cm.resolve(h, c.hex)
            views.append((feed.thread(h, hc), chat.messages(h, hc)))
            invs.append(exchange.inventory(h, [c.id]))
            h.close()
        assert views[0] == views[1] == views[2]
        assert invs[0] == invs[1] == invs[2]
        # and equal to what a reader gets from every author's full state
        ref = Home(root / "reference")
        ref.create_identity(None)
        invites.join(ref, invite)
        for a in homes:
            ref.acceptor().accept([from_record(x) for x in exchange.records_for(a, None)])
        rc = cm.resolve(ref, c.hex)
        assert views[0] == (feed.thread(ref, rc), chat.messages(ref, rc))
        for h in [*homes, ref]:
            h.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=actions)
def test_export_then_import_is_identity(script) -> None:
    root = Path(tempfile.mkdtemp())
    try:
        homes, c, invite = _homes(root)
        _play(homes, c, script)
        src = homes[0]
        for other in homes[1:]:
            src.acceptor().accept([from_record(x) for x in exchange.records_for(other, None)])
        dst = Home(root / "copy")
        dst.create_identity(None)
        invites.join(dst, invite)
        report = dst.acceptor().accept([from_record(x) for x in exchange.records_for(src, None)])
        assert report.rejected == [] and report.pending == 0
        assert exchange.inventory(dst, [c.id]) == exchange.inventory(src, [c.id])
        dc = cm.resolve(dst, c.hex)
        assert feed.thread(dst, dc) == feed.thread(src, c)
        assert chat.messages(dst, dc) == chat.messages(src, c)
        for h in [*homes, dst]:
            h.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
