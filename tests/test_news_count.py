"""What an import reports as new (posts, chat messages) is the same whether it is
counted from the keys the index found changed (`update.last_step`) or from every
key of the document at both heads, whatever else changed in the same step."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2p import chat, content, invites
from p2p import community as cm
from p2p.bundle.importer import import_bundle
from p2p.index import update
from tests.helpers import make_home
from tests.test_bundle_flow import export_file


@pytest.mark.parametrize("shortcut", [True, False])
def test_new_entries_are_counted_the_same_either_way(tmp_path: Path, monkeypatch, shortcut) -> None:
    asked: list[bool] = []
    real = update.last_step

    def spy(doc_id, before, after):  # noqa: ANN001, ANN202
        got = real(doc_id, before, after) if shortcut else None
        asked.append(got is not None and got.touched is not None)
        return got

    monkeypatch.setattr("p2p.news.last_step", spy)
    alice = make_home(tmp_path / "alice", "Alice")
    bob = make_home(tmp_path / "bob", "Bob")
    c = cm.create(alice, "Village")
    invites.join(bob, invites.write(alice, c))
    old = [content.post(alice, c, f"old {i}") for i in range(4)]
    chat.send(alice, c, "hello")
    first = import_bundle(bob, [export_file(alice, [c], tmp_path / "1.p2p")])
    assert (first.news.posts, first.news.chat_messages) == (4, 1)
    # new posts beside edits, a deletion, a reaction and a reply to an old post
    for i in range(3):
        content.post(alice, c, f"new {i}")
    content.edit(alice, c, old[0]["id"], "old 0, corrected")
    content.delete(alice, c, old[1]["id"])
    content.react(alice, c, old[2]["id"], "👍")
    content.post(alice, c, "a reply", reply_to=old[3]["id"])
    chat.send(alice, c, "again")
    chat.send(alice, c, "and again")
    second = import_bundle(bob, [export_file(alice, [c], tmp_path / "2.p2p")])
    assert (second.news.posts, second.news.chat_messages) == (4, 2)
    assert any(asked) == shortcut  # the shortcut was taken (or, here, refused)
    alice.close()
    bob.close()
