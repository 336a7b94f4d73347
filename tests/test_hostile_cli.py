"""Hostile members through the real CLI and a real LAN session.

Mallory is a member with a modified client. Her attacks (tests/hostile.py)
travel the ways real data travels: a bundle written by our own export code,
doctored and re-signed with her key, imported with `p2p import`; and a real
`p2p serve` of hers whose answers lie, synced with `p2p sync --peer` over
127.0.0.1. Each time: the attack is refused or confined to her own documents,
Alice's honest content in the same bundle or session still arrives, and
every later command keeps working.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from automerge.core import ROOT, ScalarType

from p2p import community as cm
from p2p import content, dm, invites
from p2p.bundle import export
from p2p.docref import FEED, DocRef
from tests import hostile
from tests.helpers import cli, make_home, share


@pytest.fixture
def world(tmp_path: Path):
    """Alice owns a community; Mallory (moderator, later demoted) and Carol are members.
    Mallory holds Alice's news Carol lacks; her stores are closed before any CLI runs."""
    alice = make_home(tmp_path / "alice", "Alice")
    mallory = make_home(tmp_path / "mallory", "Mallory")
    carol = make_home(tmp_path / "carol", "Carol")
    c = cm.create(alice, "Village")
    for h in (mallory, carol):
        invites.join(h, invites.write(alice, c))
    content.post(alice, c, "alice's first post")
    content.post(mallory, cm.resolve(mallory, c.hex), "mallory's post")
    content.post(carol, cm.resolve(carol, c.hex), "carol says hi")
    for a in (alice, mallory, carol):
        for b in (alice, mallory, carol):
            if a is not b:
                share(a, b)
    dm.send(alice, c, carol.public_key, "hello carol")
    cm.set_role(alice, c, mallory.public_key, "moderator")
    share(alice, mallory)
    old = mallory.docs.heads(c.ref.id)
    cm.set_role(alice, c, mallory.public_key, "member")
    content.post(alice, c, "honest news")
    share(alice, mallory)
    yield alice, mallory, carol, c, old
    for h in (alice, mallory, carol):
        h.close()


def attack(name: str, mallory, c, old: list[bytes]) -> list[dict]:
    """The records of one attack class, all validly signed by Mallory."""
    feed_ref = DocRef(c.id, FEED, mallory.public_key)
    if name == "fork":
        (a, sa), (b, sb) = hostile.fork_pair(mallory, feed_ref)
        return [hostile.record(feed_ref, a + b, sa + sb)]
    if name == "bomb":
        ref = DocRef(c.id, "chat", mallory.public_key)
        data = hostile.bomb_save(100_000_000, mallory, ref)
        return [hostile.save_record(ref, data, hostile.bomb_sigs(mallory, ref, data))]
    if name == "backdated":
        post_id = "00000000" + "0" * 16
        change, sig = hostile.backdated_hide(mallory, c.ref, post_id, old)
        return [hostile.record(c.ref, [change], [sig])]
    if name == "escapes":
        text = "".join(hostile.ESCAPES)
        change, sig = hostile.change(
            mallory,
            DocRef(c.id, "profile", mallory.public_key),
            lambda d, tx: tx.put(ROOT, "name", ScalarType.Str, text),
        )
        return [hostile.record(DocRef(c.id, "profile", mallory.public_key), [change], [sig])]
    changes, sigs = getattr(hostile, name)(mallory, feed_ref)
    return [hostile.record(feed_ref, changes, sigs)]


ATTACKS = [
    "gap",
    "no_prev_dep",
    "wrong_deps",
    "garbage_body",
    "truncated",
    "fork",
    "bomb",
    "backdated",
]


def doctored_bundle(mallory, c, records: list[dict], folder: Path) -> Path:
    """Mallory's real export, with her hostile records added, re-signed by her."""
    with export.scratch_dir(mallory) as scratch:
        built = export.build(mallory, export.domains([c])[0], Path(scratch))
        assert built is not None
        out = folder / "doctored.p2p"
        hostile.doctor_bundle(built.path, out, mallory.identity, extra=records)
    return out


def first_json(text: str):  # noqa: ANN201
    """The first JSON document printed (a failing command adds its error after)."""
    return json.JSONDecoder().raw_decode(text.lstrip())[0]


def feed_texts(home: Path, c) -> str:
    res = cli(home, "feed", c.hex, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def later_commands_work(home: Path, c, folder: Path) -> None:
    """feed, export, usb sync, chat show and dm show all still succeed."""
    assert "honest news" in feed_texts(home, c)
    for args in (
        ("export", "--out", str(folder / "again.p2p")),
        ("usb", "sync", str(folder / "stick")),
        ("chat", "show", c.hex),
        ("dm", "show", c.hex),
    ):
        res = cli(home, *args)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr


@pytest.mark.parametrize("name", ATTACKS)
def test_hostile_bundle_through_the_cli(world, tmp_path, name) -> None:
    _alice, mallory, carol, c, old = world
    records = attack(name, mallory, c, old)
    bundle = doctored_bundle(mallory, c, records, tmp_path)
    carol_path = carol.path
    carol.close()
    for look in ("verify", "inspect"):  # reading it is harmless too
        seen = cli(carol_path, look, str(bundle))
        assert seen.returncode in (0, 1), seen.stderr
        assert "Traceback" not in seen.stderr and "panicked" not in seen.stderr
    res = cli(carol_path, "import", str(bundle), "--json")
    assert "Traceback" not in res.stderr and "panicked" not in res.stderr
    out = first_json(res.stdout)[0]
    if name == "fork":
        assert res.returncode == 0, res.stderr
        assert len(out["forks"]) == 1 and "'Mallory'" in out["forks"][0]
    elif name == "wrong_deps":  # signed by its author: it waits, bounded, and never shows
        assert res.returncode == 0, res.stderr
        assert out["pending"] == 1
    else:
        assert res.returncode == 1 and res.stderr == ""  # the error is JSON on stdout
        assert out["rejected"], out
    assert out["applied_changes"] >= 1  # alice's honest news (and the demotion) arrived
    assert "honest news" in feed_texts(carol_path, c)
    if name == "backdated":
        state = json.loads(cli(carol_path, "community", "show", c.hex, "--json").stdout)
        assert not state.get("hidden_posts")
        assert out["set_aside"] == 0  # refused on arrival: the demotion came in the same bundle
    if name == "gap":
        (tmp_path / "stick").mkdir()
        later_commands_work(carol_path, c, tmp_path)


def test_hostile_bundle_on_a_stick_does_not_stop_usb_sync(world, tmp_path) -> None:
    _alice, mallory, carol, c, old = world
    stick = tmp_path / "stick"
    stick.mkdir()
    records = attack("gap", mallory, c, old) + attack("fork", mallory, c, old)
    doctored_bundle(mallory, c, records, stick)
    carol_path = carol.path
    carol.close()
    res = cli(carol_path, "usb", "sync", str(stick))
    assert "Traceback" not in res.stderr and "panicked" not in res.stderr
    assert "honest news" in feed_texts(carol_path, c)
    again = cli(carol_path, "usb", "sync", str(stick))
    assert "Traceback" not in again.stderr


def lan_sync(carol_path: Path, argv: list[str]) -> subprocess.CompletedProcess:
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    server = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert server.stdout is not None
        port = json.loads(server.stdout.readline())["port"]
        return subprocess.run(
            [sys.executable, "-m", "p2p.cli.main", "--home", str(carol_path), "sync"]
            + ["--peer", f"127.0.0.1:{port}", "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    finally:
        server.terminate()
        server.wait(15)


@pytest.mark.parametrize(
    "name",
    [
        "gap",
        "backdated",
        pytest.param("garbage_body", marks=pytest.mark.slow),
        pytest.param("fork", marks=pytest.mark.slow),
    ],
)
def test_hostile_member_over_a_real_lan_session(world, tmp_path, name) -> None:
    _alice, mallory, carol, c, old = world
    records = attack(name, mallory, c, old)
    # Mallory posts honestly too, so Carol asks for her feed (the lie rides along)
    content.post(mallory, cm.resolve(mallory, c.hex), "mallory again")
    mallory_path, carol_path = mallory.path, carol.path
    mallory.close()
    carol.close()
    argv = hostile.lying_server(mallory_path, records, tmp_path)
    res = lan_sync(carol_path, argv)
    assert "Traceback" not in res.stderr and "panicked" not in res.stderr, res.stderr
    out = first_json(res.stdout)
    if isinstance(out, dict) and "peers" in out:  # an error carries the results with it
        out = out["peers"]
    out = out[0] if isinstance(out, list) else out
    assert out["ok"], out
    if name == "fork":
        assert out["forks"] and "'Mallory'" in out["forks"][0]
    else:
        assert out["rejected"], out
        assert res.returncode == 1
    texts = feed_texts(carol_path, c)
    assert "honest news" in texts
    if name == "backdated":
        state = json.loads(cli(carol_path, "community", "show", c.hex, "--json").stdout)
        assert not state.get("hidden_posts")
    (tmp_path / "stick").mkdir()
    later_commands_work(carol_path, c, tmp_path)


def test_escape_sequences_are_stored_as_signed(world, tmp_path) -> None:
    """Member text with terminal escapes is the cli helper's to neutralise on
    screen; acceptance stores it as signed and no command fails on it."""
    _alice, mallory, carol, c, old = world
    records = attack("escapes", mallory, c, old)
    bundle = doctored_bundle(mallory, c, records, tmp_path)
    carol_path = carol.path
    carol.close()
    res = cli(carol_path, "import", str(bundle))
    assert res.returncode == 0, res.stdout + res.stderr
    shown = cli(carol_path, "feed", c.hex)
    assert shown.returncode == 0


def test_a_stored_document_that_no_longer_loads_never_stops_a_command(world, tmp_path) -> None:
    """What an older version could commit (a save that never loads again):
    `feed` and `export` still work; the first command that needs the document
    says once that it was set aside, and an import takes the copy it receives."""
    _alice, mallory, carol, c, _old = world
    ref = DocRef(c.id, FEED, mallory.public_key)
    with carol.store.transaction() as db:
        db.execute("UPDATE docs SET snapshot = ? WHERE id = ?", (b"\x85oJ\x83broken", ref.id))
    carol_path = carol.path
    carol.close()
    assert "alice's first post" in feed_texts(carol_path, c)
    first = cli(carol_path, "export", "--out", str(tmp_path / "out.p2p"))
    assert first.returncode == 0, first.stderr
    content.post(mallory, cm.resolve(mallory, c.hex), "mallory once more")
    bundle = doctored_bundle(mallory, c, [], tmp_path)
    res = cli(carol_path, "import", str(bundle))
    assert res.returncode == 0, res.stdout + res.stderr
    said = first.stderr + res.stderr
    assert said.count("set aside") == 1 and "Traceback" not in said
    texts = feed_texts(carol_path, c)
    assert "mallory once more" in texts and "alice's first post" in texts
    again = cli(carol_path, "import", str(bundle))
    assert again.returncode == 0 and "set aside" not in again.stderr


def test_demotion_arriving_after_the_backdated_change_through_the_cli(world, tmp_path) -> None:
    """Carol first gets Mallory's backdated hide with her promotion but not her
    demotion (it shows); then Alice's bundle with the demotion: the hide is set
    aside, and `import` says so."""
    from automerge.core import Document

    from p2p.documents import as_raw

    alice, mallory, carol, c, old = world
    post_id = "00000000" + "1" * 16
    hide, hide_sig = hostile.backdated_hide(mallory, c.ref, post_id, old)
    doc = Document.load(mallory.docs.data(c.ref.id)).fork_at(old)
    lacking = [as_raw(x) for x in doc.get_changes(carol.docs.heads(c.ref.id))]
    lookup = mallory.docs.sig_lookup(c.ref.id)
    sigs = [(x.hash, x.actor, lookup(x.hash, x.actor)) for x in lacking]
    sigs = [s for s in sigs if s[2] is not None] + [hide_sig]
    first = doctored_bundle(
        mallory,
        c,
        [hostile.record(c.ref, [*lacking, hide], sigs)],
        tmp_path,
    )
    only_hide = tmp_path / "first.p2p"
    hostile.doctor_bundle(
        first,
        only_hide,
        mallory.identity,
        drop=lambda r: r.get("doc") == c.ref.id and r["enc"] == "save",
    )
    with export.scratch_dir(alice) as scratch:
        built = export.build(alice, export.domains([c])[0], Path(scratch))
        assert built is not None
        second = tmp_path / "second.p2p"
        hostile.doctor_bundle(built.path, second, alice.identity)
    carol_path = carol.path
    carol.close()

    res = cli(carol_path, "import", str(only_hide), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    state = json.loads(cli(carol_path, "community", "show", c.hex, "--json").stdout)
    assert post_id in state["hidden_posts"]  # as far as carol knows, mallory may hide

    res = cli(carol_path, "import", str(second))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 earlier change set aside" in res.stdout
    state = json.loads(cli(carol_path, "community", "show", c.hex, "--json").stdout)
    assert post_id not in state["hidden_posts"]
    assert "honest news" in feed_texts(carol_path, c)
