"""Group chat and direct messages: real homes, real bundles, real age boxes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from automerge.core import ROOT, ObjType, ScalarType

from p2p import chat, dm, exchange, invites
from p2p import community as cm
from p2p.accept import from_record
from p2p.documents import get_obj, put_int
from p2p.errors import NotAllowed
from tests.helpers import cli, dump, make_home, share


@pytest.fixture
def trio(tmp_path: Path):
    homes = [make_home(tmp_path / n, n.title()) for n in ("alice", "bob", "carol")]
    alice, bob, carol = homes
    c = cm.create(alice, "Village")
    for h in (bob, carol):
        invites.join(h, invites.write(alice, c))
    for a in homes:
        for b in homes:
            if a is not b:
                share(a, b)
    yield alice, bob, carol, c
    for h in homes:
        h.close()


def test_chat_rooms_merge_all_authors_in_time_order(trio) -> None:
    alice, bob, carol, c = trio
    bc = cm.resolve(bob, c.hex)
    chat.send(alice, c, "morning")
    chat.send(bob, bc, "beans for sale", room="#Market")
    chat.send(bob, bc, "morning to you")
    share(bob, carol)
    share(alice, carol)
    cc = cm.resolve(carol, c.hex)
    assert [m["text"] for m in chat.messages(carol, cc, "general")] == ["morning", "morning to you"]
    assert [m["text"] for m in chat.messages(carol, cc, "market")] == ["beans for sale"]
    assert {r["room"]: r["messages"] for r in chat.rooms(carol, cc)} == {"general": 2, "market": 1}
    with pytest.raises(ValueError):
        chat.send(alice, c, "x", room="two words")


def test_chat_honours_bans_and_hides(trio) -> None:
    alice, bob, _carol, c = trio
    bc = cm.resolve(bob, c.hex)
    spam = chat.send(bob, bc, "spam")
    chat.send(bob, bc, "fine")
    share(bob, alice)
    cm.hide(alice, c, spam["id"])
    assert [m["text"] for m in chat.messages(alice, c)] == ["fine"]
    cm.ban(alice, c, bob.public_key)
    assert chat.messages(alice, c) == []
    assert len(chat.messages(alice, c, moderated=False)) == 2  # the signed data is kept


def test_direct_message_reaches_only_its_recipient(trio) -> None:
    alice, bob, carol, c = trio
    sent = dm.send(alice, c, bob.public_key, "the key is under the stone")
    for h in (bob, carol):
        share(alice, h)
    bc, cc = cm.resolve(bob, c.hex), cm.resolve(carol, c.hex)
    got = dm.messages(bob, bc)
    assert [(m["text"], m["sent"], m["with"]) for m in got] == [
        ("the key is under the stone", False, alice.public_key.hex())
    ]
    assert dm.messages(carol, cc) == []  # carol carries it but cannot read it
    # at rest, the recipient's store keeps only the sealed box: a seized device
    # shows no direct message without the (passphrase-protected) identity key
    bob.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = b"".join(f.read_bytes() for f in bob.path.iterdir() if f.name.startswith("p2p.db"))
    assert b"under the stone" not in raw
    assert [m["text"] for m in dm.messages(alice, c, bob.public_key)] == [
        "the key is under the stone"
    ]
    # nothing readable in what carries it: no text, no recipient key
    records = list(exchange.records_for(alice, None, [c.id]))
    assert b"under the stone" not in b"".join(r["data"] for r in records)
    box_doc = next(r["data"] for r in records if r["kind"] == "dm")
    assert bob.public_key not in box_doc and bob.public_key[:8].hex().encode() not in box_doc
    assert sent["id"].startswith(alice.public_key[:4].hex())
    with pytest.raises(NotAllowed):
        dm.send(alice, c, alice.public_key, "note to self")


def test_a_copied_box_is_not_shown_as_the_copiers(trio) -> None:
    """Carol copies Alice's sealed box into her own dm document (she can sign
    that, it is hers); Bob must not see it as a message from Carol."""
    alice, bob, carol, c = trio
    dm.send(alice, c, bob.public_key, "from alice really")
    share(alice, carol)
    cc = cm.resolve(carol, c.hex)
    theirs = exchange.records_for(carol, None, [c.id])
    box_doc = next(r for r in theirs if r["kind"] == "dm" and r["owner"] == alice.public_key)
    loaded = from_record(box_doc).loaded
    data = loaded.get(ROOT, "boxes")[1]
    entry = loaded.get(data, loaded.keys(data)[0])[1]
    box = loaded.get(entry, "box")[0][1]

    def edit(doc, tx) -> None:  # noqa: ANN001
        root = get_obj(doc, ROOT, "boxes") or tx.put_object(ROOT, "boxes", ObjType.Map)
        m = tx.put_object(root, "c0ffee0000000000", ObjType.Map)
        tx.put(m, "box", ScalarType.Bytes, box)
        put_int(tx, m, "ts", 1)

    carol.docs.write(dm.dm_ref(cc, carol.public_key), carol.identity, edit)
    share(carol, bob)
    share(alice, bob)
    bc = cm.resolve(bob, c.hex)
    got = dm.messages(bob, bc)
    assert [(m["text"], m["with"]) for m in got] == [("from alice really", alice.public_key.hex())]


def test_dm_to_someone_without_a_published_key_is_refused(tmp_path: Path) -> None:
    alice = make_home(tmp_path / "alice", "Alice")
    c = cm.create(alice, "Village")
    stranger = os.urandom(32)
    before = dump(alice)
    with pytest.raises(Exception, match="not published an encryption key"):
        dm.send(alice, c, stranger, "hello?")
    assert dump(alice) == before
    alice.close()


def test_cli_chat_and_dm_over_bundles(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for h, name in ((a, "Alice"), (b, "Bob")):
        assert cli(h, "init", "--no-passphrase", "--name", name).returncode == 0
    cid = json.loads(cli(a, "community", "create", "Village", "--json").stdout)["id"]
    assert cli(a, "community", "invite", cid, "--out", str(tmp_path / "inv")).returncode == 0
    assert cli(b, "community", "join", str(tmp_path / "inv")).returncode == 0
    assert cli(b, "export", "--out", str(tmp_path / "b.p2p")).returncode == 0
    assert cli(a, "import", str(tmp_path / "b.p2p")).returncode == 0
    assert cli(a, "chat", "send", cid, "hello room").returncode == 0
    sent = cli(a, "dm", "send", cid, "Bob", "just for you", "--json")
    assert sent.returncode == 0, sent.stderr
    assert cli(a, "export", "--out", str(tmp_path / "a.p2p")).returncode == 0
    imp = json.loads(cli(b, "import", str(tmp_path / "a.p2p"), "--json").stdout)[0]
    assert (imp["new_chat_messages"], imp["new_direct_messages"]) == (1, 1)
    shown = json.loads(cli(b, "chat", "show", cid, "--json").stdout)
    assert [m["text"] for m in shown] == ["hello room"]
    dms = json.loads(cli(b, "dm", "show", cid, "--json").stdout)
    assert [(m["text"], m["with_name"]) for m in dms] == [("just for you", "Alice")]
    assert "Alice" in cli(b, "dm", "show", cid).stdout
    nobody = cli(b, "dm", "send", cid, "Nobody", "x")
    assert nobody.returncode == 1 and "no member" in nobody.stderr
