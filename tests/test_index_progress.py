"""The first view after an index-layout upgrade re-reads the community: on a terminal
it says so with the progress meter the other long commands use, through the real
CLI; a view with nothing to index, or one in a pipe, draws nothing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from p2p import community as cm
from p2p import content, dm, invites
from tests.helpers import cli, make_home, share
from tests.test_bundle_progress import _on_a_terminal


@pytest.fixture
def village(tmp_path: Path) -> tuple[Path, str]:
    alice = make_home(tmp_path / "a", "Alice")
    bob = make_home(tmp_path / "b", "Bob")
    c = cm.create(alice, "Village")
    invites.join(bob, invites.write(alice, c))
    share(bob, alice)
    for i in range(20):
        content.post(alice, c, f"river post {i}")
    dm.send(alice, c, bob.public_key, "a word in private")
    alice.close()
    bob.close()
    return tmp_path / "a", c.hex


def old_layout(home: Path) -> None:
    """As a store written by a p2p with another index layout: its ix_* tables go on
    the next open, and the first view indexes every document again."""
    db = sqlite3.connect(home / "p2p.db", isolation_level=None)
    db.execute("DELETE FROM meta WHERE key = 'index'")
    db.close()


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (("feed",), "river post 19"),
        (("chat", "show"), "No messages yet."),
        (("search",), "river post"),
        (("dm", "show"), "a word in private"),
    ],
)
def test_a_view_that_must_reindex_shows_progress_on_a_terminal(
    village: tuple[Path, str], argv: tuple[str, ...], shown: str
) -> None:
    home, cid = village
    extra = ("river",) if argv == ("search",) else ()
    old_layout(home)
    status, drawn = _on_a_terminal(home, *argv, cid, *extra)
    assert status == 0, drawn
    assert "indexing Village (once)" in drawn and shown in drawn, drawn
    # indexed now: the same view draws no meter
    status, drawn = _on_a_terminal(home, *argv, cid, *extra)
    assert status == 0 and shown in drawn, drawn
    assert "indexing" not in drawn, drawn


def test_in_a_pipe_reindexing_is_silent_and_the_views_are_the_same(
    village: tuple[Path, str],
) -> None:
    home, cid = village
    before = cli(home, "feed", cid, "--json", "--last", "0")
    assert before.returncode == 0, before.stderr
    old_layout(home)
    after = cli(home, "feed", cid, "--json", "--last", "0")
    assert after.returncode == 0 and after.stderr == "", after.stderr
    assert json.loads(after.stdout) == json.loads(before.stdout)
