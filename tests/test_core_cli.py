"""The CLI end to end, as real subprocesses: identities, communities, posts, moderation."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from automerge.core import Document

PASS = "correct horse battery staple"


def p2p(
    home: Path, *args: str, passphrase: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("P2P_")},
        **(env or {}),
        "P2P_HOME": str(home),
    }
    if passphrase is not None:
        env["P2P_PASSPHRASE"] = passphrase
    return subprocess.run(
        [sys.executable, "-m", "p2p.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0, res.stderr
    return res


def js(res: subprocess.CompletedProcess):
    return json.loads(ok(res).stdout)


def one_line_error(res: subprocess.CompletedProcess, fragment: str) -> None:
    assert res.returncode == 1, res.stdout
    lines = [x for x in res.stderr.strip().splitlines() if x.strip()]
    assert lines and lines[0].startswith("error:"), res.stderr
    assert fragment in res.stderr.replace("\n", " "), res.stderr


def test_identity_with_passphrase(tmp_path: Path) -> None:
    home = tmp_path / "h"
    ok(p2p(home, "init", "--name", "Ha-eun", passphrase=PASS))
    me = js(p2p(home, "whoami", "--json"))
    assert set(me) >= {"fingerprint", "public_key"} and me["protected"] is True
    con = sqlite3.connect(home / "p2p.db")
    sealed = con.execute("SELECT sealed FROM identity").fetchone()[0]
    con.close()
    assert sealed.startswith(b"p2p-sealed-v2\n")
    cid = js(p2p(home, "community", "create", "Village", "--json", passphrase=PASS))["id"]
    one_line_error(p2p(home, "post", cid, "hi", passphrase="wrong"), "wrong passphrase")
    one_line_error(p2p(home, "post", cid, "hi"), "P2P_PASSPHRASE")
    assert js(p2p(home, "feed", cid, "--json")) == []  # nothing was written
    ok(p2p(home, "post", cid, "hi", passphrase=PASS))
    backup = tmp_path / "backup.age"
    ok(p2p(home, "identity", "export", str(backup), passphrase=PASS))
    assert backup.read_bytes().startswith(b"age-encryption.org/v1\n")
    other = tmp_path / "new-device"
    restored = js(p2p(other, "identity", "import", str(backup), "--json", passphrase=PASS))
    assert restored["fingerprint"] == me["fingerprint"]
    one_line_error(
        p2p(tmp_path / "x", "identity", "import", str(backup), passphrase="no"), "wrong passphrase"
    )


def test_no_passphrase_warns_and_init_twice_fails(tmp_path: Path) -> None:
    res = ok(p2p(tmp_path / "h", "init", "--no-passphrase"))
    assert "UNENCRYPTED" in res.stderr
    one_line_error(p2p(tmp_path / "h", "init", "--no-passphrase"), "already exists")
    one_line_error(p2p(tmp_path / "nobody", "whoami"), "p2p init")


@pytest.fixture
def two(tmp_path: Path):
    a, b = tmp_path / "alice", tmp_path / "bob"
    ok(p2p(a, "init", "--no-passphrase", "--name", "Alice"))
    ok(p2p(b, "init", "--no-passphrase", "--name", "Bob"))
    cid = js(p2p(a, "community", "create", "Village", "--description", "river news", "--json"))
    ok(p2p(a, "community", "invite", cid["id"], "--out", str(tmp_path / "inv")))
    joined = js(p2p(b, "community", "join", str(tmp_path / "inv"), "--json"))
    assert joined["id"] == cid["id"] and joined["name"] == "Village"
    return a, b, cid["id"], tmp_path


def carry(src: Path, dst: Path, tmp: Path) -> None:
    """Move everything from one home to another the way users do: a bundle file."""
    out = tmp / f"{src.name}-to-{dst.name}.p2p"
    ok(p2p(src, "export", "--out", str(out), "--force"))
    ok(p2p(dst, "import", str(out)))


def test_posting_and_threaded_feed(two) -> None:
    a, b, cid, tmp = two
    first = js(p2p(a, "post", cid, "seed swap on Thursday", "--json"))
    assert set(first) >= {"id", "text", "author", "parent"}
    carry(a, b, tmp)
    reply = js(p2p(b, "post", cid, "I will bring beans", "--reply-to", first["id"][:10], "--json"))
    assert reply["parent"] == first["id"]
    ok(p2p(b, "react", cid, first["id"], "👍"))
    carry(b, a, tmp)
    ok(p2p(a, "edit", cid, first["id"], "seed swap on Friday"))
    second = js(p2p(a, "post", cid, "to be deleted", "--json"))
    ok(p2p(a, "delete", cid, second["id"]))
    one_line_error(p2p(a, "edit", cid, reply["id"], "hijack"), "your own posts")
    one_line_error(p2p(a, "delete", cid, reply["id"]), "your own posts")
    posts = js(p2p(a, "feed", cid, "--json"))
    assert [p["text"] for p in posts] == ["seed swap on Friday", ""]
    top = posts[0]
    assert top["edited"] and not top["deleted"] and top["author_name"] == "Alice"
    assert top["reactions"] == {"👍": [js(p2p(b, "whoami", "--json"))["public_key"]]}
    assert [r["text"] for r in top["replies"]] == ["I will bring beans"]
    assert posts[1]["deleted"] is True
    assert [p["id"] for p in js(p2p(a, "feed", cid, "--last", "1", "--json"))] == [posts[1]["id"]]
    assert "1 older thread not shown" in ok(p2p(a, "feed", cid, "--last", "1")).stdout
    text = ok(p2p(a, "feed", cid)).stdout
    assert "Bob" in text and "edited" in text and "deleted" in text
    ok(p2p(b, "react", cid, first["id"], "👍", "--remove"))
    one_line_error(p2p(b, "react", cid, first["id"], "👍", "--remove"), "not reacted")
    carry(b, a, tmp)
    assert js(p2p(a, "feed", cid, "--json"))[0]["reactions"] == {}


def test_doc_export_is_standard_automerge(two) -> None:
    a, _b, cid, tmp = two
    ok(p2p(a, "post", cid, "hello"))
    docs = js(p2p(a, "doc", "list", cid, "--json"))
    assert sorted(d["kind"] for d in docs) == ["community", "feed", "profile"]
    feed_doc = next(d for d in docs if d["kind"] == "feed")
    out = tmp / "feed.automerge"
    ok(p2p(a, "doc", "export", feed_doc["id"], "--out", str(out)))
    loaded = Document.load(out.read_bytes())
    assert sorted(h.hex() for h in loaded.get_heads()) == sorted(feed_doc["heads"])


def test_roles_and_moderation(two) -> None:
    a, b, cid, tmp = two
    ok(p2p(b, "post", cid, "spam spam"))
    keep = js(p2p(b, "post", cid, "useful", "--json"))
    carry(b, a, tmp)
    spam = next(p for p in js(p2p(a, "feed", cid, "--json")) if p["text"] == "spam spam")
    one_line_error(p2p(b, "mod", "hide", cid, spam["id"]), "owner and moderators")
    one_line_error(p2p(b, "community", "settings", cid, "--rules", "mine"), "owner and moderators")
    ok(p2p(a, "mod", "hide", cid, spam["id"]))
    assert [p["text"] for p in js(p2p(a, "feed", cid, "--json"))] == ["useful"]
    ok(p2p(a, "community", "settings", cid, "--rules", "be kind"))
    ok(p2p(a, "community", "role", cid, "Bob", "moderator"))
    show = js(p2p(a, "community", "show", cid, "--json"))
    assert show["rules"] == "be kind"
    roles = {m["name"]: m["role"] for m in show["member_list"]}
    assert roles == {"Alice": "owner", "Bob": "moderator"}
    carry(a, b, tmp)
    assert [p["text"] for p in js(p2p(b, "feed", cid, "--json"))] == ["useful"]
    ok(p2p(a, "mod", "ban", cid, "Bob"))
    assert js(p2p(a, "feed", cid, "--json")) == []
    docs = js(p2p(a, "doc", "list", cid, "--json"))  # the banned author's data is kept
    bob_key = js(p2p(b, "whoami", "--json"))["public_key"]
    assert any(d["owner"] == bob_key and d["kind"] == "feed" for d in docs)
    everything = js(p2p(a, "feed", cid, "--json"))
    assert keep["id"] not in json.dumps(everything)  # banned author's post is out of the view
    ok(p2p(a, "mod", "unban", cid, "Bob"))
    ok(p2p(a, "mod", "unhide", cid, spam["id"]))
    one_line_error(p2p(a, "mod", "unhide", cid, spam["id"]), "not hidden")
    carry(a, b, tmp)
    assert sorted(p["text"] for p in js(p2p(b, "feed", cid, "--json"))) == ["spam spam", "useful"]
    one_line_error(p2p(a, "community", "role", cid, "Nobody", "moderator"), "no member")


def test_exit_codes_and_errors(tmp_path: Path) -> None:
    h = tmp_path / "h"
    ok(p2p(h, "init", "--no-passphrase"))
    one_line_error(p2p(h, "feed", "deadbeef"), "no joined community")
    missing = p2p(h, "community", "join", str(tmp_path / "missing"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr  # a usage error
    bad = tmp_path / "bad.inv"
    bad.write_bytes(b"\x93\x01\x02")
    one_line_error(p2p(h, "community", "join", str(bad)), "not a valid p2p invite")
    cid = js(p2p(h, "community", "create", "V", "--json"))["id"]
    one_line_error(p2p(h, "post", cid, "x", "--reply-to", "ffffffffff"), "no post")


def test_private_invite_is_sealed_with_a_passphrase(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for h in (a, b, c):
        ok(p2p(h, "init", "--no-passphrase"))
    cid = js(p2p(a, "community", "create", "Night school", "--private", "--json"))["id"]
    inv = tmp_path / "night.inv"
    one_line_error(p2p(a, "community", "invite", cid, "--out", str(inv)), "P2P_INVITE_PASSPHRASE")
    assert not inv.exists()
    env = {"P2P_INVITE_PASSPHRASE": "river stones"}
    ok(p2p(a, "community", "invite", cid, "--out", str(inv), env=env))
    data = inv.read_bytes()
    assert data.startswith(b"age-encryption.org/v1\n") and b"AGE-SECRET-KEY" not in data
    assert bytes.fromhex(cid) not in data  # not even which community
    wrong = p2p(b, "community", "join", str(inv), env={"P2P_INVITE_PASSPHRASE": "guess"})
    one_line_error(wrong, "passphrase does not open")
    one_line_error(p2p(b, "community", "join", str(inv)), "P2P_INVITE_PASSPHRASE")
    assert js(p2p(b, "community", "list", "--json")) == []  # nothing half-joined
    joined = js(p2p(b, "community", "join", str(inv), "--json", env=env))
    assert joined["id"] == cid and joined["private"] is True
    plain = tmp_path / "plain.inv"
    res = ok(p2p(a, "community", "invite", cid, "--out", str(plain), "--no-passphrase"))
    assert "NOT sealed" in res.stderr
    ok(p2p(c, "community", "join", str(plain)))


def test_leave_removes_a_community_from_the_device(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for h in (a, b):
        ok(p2p(h, "init", "--no-passphrase"))
    keep = js(p2p(a, "community", "create", "Keep", "--json"))["id"]
    gone = js(p2p(a, "community", "create", "Gone", "--private", "--json"))["id"]
    ok(p2p(a, "post", keep, "stays here"))
    ok(p2p(a, "post", gone, "a very private sentence"))
    env = {"P2P_INVITE_PASSPHRASE": "pw"}
    ok(p2p(a, "community", "invite", gone, "--out", str(tmp_path / "inv"), env=env))
    ok(p2p(b, "community", "join", str(tmp_path / "inv"), env=env))
    ok(p2p(a, "export", gone, "--out", str(tmp_path / "gone.p2p")))  # e.g. on a friend's stick
    secret = sqlite3.connect(b / "p2p.db").execute("SELECT secret FROM communities").fetchone()[0]

    def raw_store() -> bytes:
        return b"".join(f.read_bytes() for f in a.iterdir() if f.name.startswith("p2p.db"))

    assert b"a very private sentence" in raw_store() and secret.encode() in raw_store()
    refused = p2p(a, "community", "leave", gone)  # no terminal and no --yes: a usage error
    assert refused.returncode == 2 and "--yes" in refused.stderr
    left = js(p2p(a, "community", "leave", gone, "--yes", "--json"))
    assert left["documents_removed"] >= 2
    assert [c["id"] for c in js(p2p(a, "community", "list", "--json"))] == [keep]
    raw = raw_store()
    assert b"a very private sentence" not in raw and secret.encode() not in raw
    assert js(p2p(a, "feed", keep, "--json"))[0]["text"] == "stays here"
    # a member's invite and a bundle of it bring it back, role intact
    ok(p2p(b, "community", "invite", gone, "--out", str(tmp_path / "back"), env=env))
    ok(p2p(a, "community", "join", str(tmp_path / "back"), env=env))
    ok(p2p(a, "import", str(tmp_path / "gone.p2p")))
    assert [p["text"] for p in js(p2p(a, "feed", gone, "--json"))] == ["a very private sentence"]
    assert js(p2p(a, "community", "show", gone, "--json"))["role"] == "owner"
