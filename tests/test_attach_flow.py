"""Attachments end to end through the real CLI and real bundles, and hostile input."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from p2p import community as cm
from p2p import content, invites
from p2p.blobs import attach
from p2p.blobs import store as blob_store
from p2p.blobs.entries import Entry
from p2p.blobs.manifest import CHUNK
from p2p.blobs.store import BlobStore
from p2p.bundle.container import write_bundle
from p2p.bundle.export import _records, domains
from p2p.bundle.importer import import_bundle
from p2p.errors import BundleTruncated
from tests.helpers import cli, dump, make_home


def ok(res):  # noqa: ANN001, ANN201
    assert res.returncode == 0, res.stderr + res.stdout
    return res


def js(res):  # noqa: ANN001, ANN201
    return json.loads(ok(res).stdout)


@pytest.fixture
def pair(tmp_path: Path):
    """Ana owns an open community `Town` that Bo has joined (both real CLI homes)."""
    a, b = tmp_path / "a", tmp_path / "b"
    for h in (a, b):
        ok(cli(h, "init", "--no-passphrase"))
    cid = js(cli(a, "community", "create", "Town", "--json"))["id"]
    ok(cli(a, "community", "invite", cid, "--out", str(tmp_path / "inv"), "--no-passphrase"))
    ok(cli(b, "community", "join", str(tmp_path / "inv")))
    return a, b, cid


def test_post_attach_list_save_through_a_bundle(pair, tmp_path: Path) -> None:
    a, b, cid = pair
    f1, f2 = tmp_path / "notes.txt", tmp_path / "film.bin"
    f1.write_text("minutes of the meeting\n")
    f2.write_bytes(os.urandom(2 * CHUNK + 3))
    made = js(cli(a, "post", cid, "two files", "--attach", str(f1), "--attach", str(f2), "--json"))
    assert [x["name"] for x in made["attachments"]] == ["notes.txt", "film.bin"]
    ok(cli(a, "chat", "send", cid, "and here", "--attach", str(f1)))
    ok(cli(a, "export", cid, "--out", str(tmp_path / "x.p2p")))
    res = ok(cli(b, "import", str(tmp_path / "x.p2p")))
    assert "attachments: 4 chunks" in res.stdout
    listed = js(cli(b, "attachments", cid, made["id"], "--json"))
    assert [(x["name"], x["size"], x["mime"], x["present"]) for x in listed] == [
        ("notes.txt", f1.stat().st_size, "text/plain", "whole"),
        ("film.bin", 2 * CHUNK + 3, "application/octet-stream", "whole"),
    ]
    assert {"hash", "name", "size", "mime", "present"} <= set(listed[0])
    feed = ok(cli(b, "feed", cid)).stdout
    assert "film.bin" in feed and "2.0 MiB" in feed and "here" in feed
    assert "notes.txt" in ok(cli(b, "chat", "show", cid)).stdout
    out = tmp_path / "saved.bin"
    ok(cli(b, "attachment", "save", listed[1]["hash"], "--out", str(out)))
    assert out.read_bytes() == f2.read_bytes() and out.stat().st_mode & 0o777 == 0o600
    res = cli(b, "attachment", "save", listed[1]["hash"], "--out", str(out))
    assert res.returncode == 1 and "--force" in res.stderr


def test_budget_leaves_the_rest_for_a_later_trip_and_two_sticks_complete_it(
    pair, tmp_path: Path
) -> None:
    a, b, cid = pair
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(5 * CHUNK))
    small = tmp_path / "small.txt"
    small.write_text("hello")
    ok(cli(a, "post", cid, "old small", "--attach", str(small)))
    pid = js(cli(a, "post", cid, "big one", "--attach", str(big), "--json"))["id"]
    stick1 = tmp_path / "s1.p2p"
    res = js(cli(a, "export", cid, "--out", str(stick1), "--max-size", "3M", "--json"))
    assert res[0]["bytes"] <= 3 * CHUNK
    assert res[0]["left_for_later"] and res[0]["left_for_later"][0]["name"] == "big.bin"
    human = ok(cli(a, "export", cid, "--out", str(tmp_path / "s0.p2p"), "--max-size", "3M"))
    assert "left for a later trip" in human.stdout
    ok(cli(b, "import", str(stick1)))
    listed = js(cli(b, "attachments", cid, pid, "--json"))
    assert listed[0]["present"] == "partial" and 0 < listed[0]["percent"] < 100
    res = cli(b, "attachment", "save", listed[0]["hash"], "--out", str(tmp_path / "o"))
    assert res.returncode == 1 and "not complete" in res.stderr
    assert not (tmp_path / "o").exists()
    # the second stick carries only what Bo lacks (Ana learnt it from Bo's bundle)
    ok(cli(b, "export", cid, "--out", str(tmp_path / "back.p2p")))
    ok(cli(a, "import", str(tmp_path / "back.p2p")))
    peer = js(cli(b, "whoami", "--json"))["fingerprint"]
    stick2 = tmp_path / "s2.p2p"
    res2 = js(cli(a, "export", cid, "--out", str(stick2), "--for", peer, "--json"))
    assert res2[0]["attachment_bytes"] < 5 * CHUNK
    ok(cli(b, "import", str(stick2)))
    ok(cli(b, "attachment", "save", listed[0]["hash"], "--out", str(tmp_path / "o")))
    assert (tmp_path / "o").read_bytes() == big.read_bytes()
    text_only = js(
        cli(a, "export", cid, "--out", str(tmp_path / "t.p2p"), "--no-attachments", "--json")
    )
    assert text_only[0]["attachment_bytes"] == 0 and text_only[0]["bytes"] < CHUNK


def test_private_community_attachments_are_sealed(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for h in (a, b):
        ok(cli(h, "init", "--no-passphrase"))
    cid = js(cli(a, "community", "create", "Secret", "--private", "--json"))["id"]
    ok(cli(a, "community", "invite", cid, "--out", str(tmp_path / "inv"), "--no-passphrase"))
    ok(cli(b, "community", "join", str(tmp_path / "inv")))
    f = tmp_path / "letter.pdf"
    f.write_bytes(b"%PDF-1.4 the list of names " + os.urandom(CHUNK))
    pid = js(cli(a, "post", cid, "the letter", "--attach", str(f), "--json"))["id"]
    stored = b"".join(p.read_bytes() for p in (a / "blobs").rglob("[0-9a-f]*") if p.is_file())
    assert b"list of names" not in stored  # sealed at rest, chunk by chunk
    ok(cli(a, "export", cid, "--out", str(tmp_path / "x.p2p")))
    assert b"list of names" not in (tmp_path / "x.p2p").read_bytes()
    ok(cli(b, "import", str(tmp_path / "x.p2p")))
    (item,) = js(cli(b, "attachments", cid, pid, "--json"))
    assert item["encrypted"] and item["present"] == "whole"
    ok(cli(b, "attachment", "save", item["hash"], "--out", str(tmp_path / "o.pdf")))
    assert (tmp_path / "o.pdf").read_bytes() == f.read_bytes()


def _bundle(home, path: Path, mutate=None) -> None:  # noqa: ANN001
    """A real signed bundle of all `home` has, its records passed through `mutate`."""
    recs = []
    for d in domains(cm.all_communities(home)):
        recs += list(_records(home, d, None, None))
    if mutate:
        recs = mutate(recs)
    with path.open("wb") as out:
        write_bundle(out, home.identity, recs)


@pytest.fixture
def homes(tmp_path: Path):
    a, b = make_home(tmp_path / "a", "Ana"), make_home(tmp_path / "b", "Bo")
    c = cm.create(a, "Town")
    invites.join(b, invites.write(a, c))
    yield a, b, c
    a.close()
    b.close()


def _post_file(home, c, data: bytes, name: str = "f.bin") -> Entry:  # noqa: ANN001
    src = home.path.parent / name
    src.write_bytes(data)
    (e,) = attach.add_files(home, [src], private=False)
    content.post(home, c, f"post with {name}", attachments=[e.as_doc()])
    return e


def _posts(home, c) -> list[str]:  # noqa: ANN001
    from p2p.feed import all_posts

    return [p["text"] for p in all_posts(home, c)]


def test_forged_chunk_is_refused_and_the_post_still_arrives(homes, tmp_path: Path) -> None:
    a, b, c = homes
    e = _post_file(a, c, os.urandom(CHUNK + 9))

    def forge(recs: list[dict]) -> list[dict]:
        for r in recs:
            if r["t"] == "blob-chunk" and r["n"] == 1:
                r["data"] = bytes([r["data"][0] ^ 1]) + r["data"][1:]
        return recs

    _bundle(a, tmp_path / "x.p2p", forge)
    r = import_bundle(b, [tmp_path / "x.p2p"])
    assert "post with f.bin" in _posts(b, c)
    assert any("does not match its hash" in why for why in r.attachments.refused)
    assert BlobStore(b).presence(e.id).state == "partial"


def test_bundle_cut_mid_attachment_changes_nothing(homes, tmp_path: Path) -> None:
    a, b, c = homes
    _post_file(a, c, os.urandom(3 * CHUNK))
    _bundle(a, tmp_path / "x.p2p")
    data = (tmp_path / "x.p2p").read_bytes()
    (tmp_path / "cut.p2p").write_bytes(data[: len(data) - CHUNK - 500])
    before = dump(b)
    with pytest.raises(BundleTruncated):
        import_bundle(b, [tmp_path / "cut.p2p"])
    assert dump(b) == before
    BlobStore(b).collect(set())
    import_bundle(b, [tmp_path / "x.p2p"])  # the whole one still imports
    assert "post with f.bin" in _posts(b, c)


def test_manifest_disagreeing_with_its_post_is_refused(homes, tmp_path: Path) -> None:
    a, b, c = homes
    src = tmp_path / "a.bin"
    src.write_bytes(os.urandom(100))
    (e,) = attach.add_files(a, [src], private=False)
    lying = Entry(e.id, e.name, 10**9, e.mime)  # the post claims another size
    content.post(a, c, "lying post", attachments=[lying.as_doc()])
    _bundle(a, tmp_path / "x.p2p")
    r = import_bundle(b, [tmp_path / "x.p2p"])
    assert "lying post" in _posts(b, c)
    assert any("does not match what the post says" in why for why in r.attachments.refused)
    assert BlobStore(b).presence(e.id) is None


def test_attachment_over_the_community_limit_keeps_the_text(homes, tmp_path: Path) -> None:
    a, b, c = homes
    e = _post_file(a, c, os.urandom(5000), "big.bin")
    cm.update_settings(a, c, **{attach.LIMIT_LARGEST: "4000"})
    _bundle(a, tmp_path / "x.p2p")
    r = import_bundle(b, [tmp_path / "x.p2p"])
    assert "post with big.bin" in _posts(b, c)
    assert any(
        "over this community's" in why and "text was kept" in why for why in r.attachments.refused
    )
    assert BlobStore(b).presence(e.id) is None


def test_two_posts_naming_one_attachment_with_different_names(homes, tmp_path: Path) -> None:
    a, b, c = homes
    e = _post_file(a, c, os.urandom(CHUNK + 1), "report.pdf")
    renamed = Entry(e.id, "invoice.exe", e.size, e.mime)
    content.post(a, c, "same bytes, other name", attachments=[renamed.as_doc()])
    _bundle(a, tmp_path / "x.p2p")
    r = import_bundle(b, [tmp_path / "x.p2p"])
    assert r.attachments.chunks == 2  # carried and stored once
    from p2p.feed import all_posts

    names = {p["text"]: [x["name"] for x in p["attachments"]] for p in all_posts(b, c)}
    assert names["post with report.pdf"] == ["report.pdf"]
    assert names["same bytes, other name"] == ["invoice.exe"]
    out = io.BytesIO()
    BlobStore(b).save(e.id, out)
    assert len(out.getvalue()) == e.size


def test_unreferenced_chunks_are_not_kept_past_the_budget(
    homes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, c = homes
    store = BlobStore(a)
    data = os.urandom(2 * CHUNK)
    aid, _m = store.add(io.BytesIO(data), len(data), "orphan.bin", "application/octet-stream")

    def add_orphan(recs: list[dict]) -> list[dict]:
        extra = [{"t": "blob-manifest", "id": aid, "data": store.manifest_bytes(aid)}]
        extra += [{"t": "blob-chunk", "id": aid, "n": n, "data": d} for n, d in store.chunks(aid)]
        return recs + extra

    _bundle(a, tmp_path / "x.p2p", add_orphan)
    monkeypatch.setattr(blob_store, "UNREFERENCED_BUDGET", CHUNK)  # a small budget
    r = import_bundle(b, [tmp_path / "x.p2p"])
    assert r.attachments.chunks == 2  # verified against its manifest, then let go
    assert BlobStore(b).presence(aid) is None
    assert not [p for p in (b.path / "blobs").rglob("[0-9a-f]*") if p.is_file()]


def test_chunk_for_an_unknown_manifest_is_refused_not_raised(homes, tmp_path: Path) -> None:
    a, b, c = homes
    content.post(a, c, "plain text")

    def junk(recs: list[dict]) -> list[dict]:
        return recs + [
            {"t": "blob-chunk", "id": b"\x07" * 32, "n": 0, "data": b"zz"},
            {"t": "blob-manifest", "id": b"\x08" * 32, "data": b"\xc1garbage"},
            {"t": "blob-have", "have": "nonsense"},
        ]

    _bundle(a, tmp_path / "x.p2p", junk)
    r = import_bundle(b, [tmp_path / "x.p2p"])
    assert "plain text" in _posts(b, c)
    assert len(r.attachments.refused) == 3


def test_drop_box_never_writes_an_attachment_already_on_the_stick(pair, tmp_path: Path) -> None:
    a, b, cid = pair
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * CHUNK))
    pid = js(cli(a, "post", cid, "big", "--attach", str(big), "--json"))["id"]
    stick = tmp_path / "stick"
    stick.mkdir()
    first = js(cli(a, "usb", "sync", str(stick), "--json"))
    assert first["written"][0]["attachment_bytes"] == 3 * CHUNK
    ok(cli(a, "post", cid, "only text this time"))
    again = js(cli(a, "usb", "sync", str(stick), "--json"))
    assert [w["attachment_bytes"] for w in again["written"]] == [0]
    got = js(cli(b, "usb", "sync", str(stick), "--json"))
    assert all(w["attachment_bytes"] == 0 for w in got["written"])
    (item,) = js(cli(b, "attachments", cid, pid, "--json"))
    assert item["present"] == "whole"
    on_stick = sum(p.stat().st_size for p in stick.iterdir())
    assert on_stick < 4 * CHUNK  # the attachment is on the stick once


def test_usb_sync_budget_and_text_only(pair, tmp_path: Path) -> None:
    a, b, cid = pair
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(4 * CHUNK))
    ok(cli(a, "post", cid, "big", "--attach", str(big)))
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    s1.mkdir(), s2.mkdir()
    res = js(cli(a, "usb", "sync", str(s1), "--max-size", "2M", "--json"))
    assert res["written"][0]["left_for_later"][0]["name"] == "big.bin"
    assert res["written"][0]["bytes"] <= 2 * CHUNK
    human = ok(cli(a, "usb", "sync", str(s2), "--no-attachments")).stdout
    assert "left for a later trip" not in human
    assert sum(p.stat().st_size for p in s2.iterdir()) < CHUNK


def test_wanted_attachments_go_first_within_a_budget(homes, tmp_path: Path) -> None:
    from p2p.blobs import exchange as bx

    a, _b, c = homes
    old = _post_file(a, c, os.urandom(CHUNK), "old.bin")
    new = _post_file(a, c, os.urandom(CHUNK // 2), "new.bin")
    order = [r["id"] for r in bx.records_for(a, [c.id], bx.Plan()) if r["t"] == "blob-manifest"]
    assert order == [new.id, old.id]  # newest first by default (same day: smallest first)
    plan = bx.Plan(budget=CHUNK + 4096, wants={old.id})
    order = [r["id"] for r in bx.records_for(a, [c.id], plan) if r["t"] == "blob-manifest"]
    assert order == [old.id]  # someone asked for it: it goes first, the rest waits
    assert [x["name"] for x in plan.left] == ["new.bin"]


def test_verify_checks_chunks_without_the_key(homes, tmp_path: Path) -> None:
    from p2p.bundle.verify import verify_bundle

    a, _b, c = homes
    _post_file(a, c, os.urandom(CHUNK + 5))
    _bundle(a, tmp_path / "good.p2p")
    good = verify_bundle([tmp_path / "good.p2p"])
    assert good.ok and good.blobs.chunks == 2

    def forge(recs: list[dict]) -> list[dict]:
        for r in recs:
            if r["t"] == "blob-chunk" and r["n"] == 0:
                r["data"] = bytes([r["data"][0] ^ 0xFF]) + r["data"][1:]  # always a change
        return recs

    _bundle(a, tmp_path / "bad.p2p", forge)
    res = cli(a.path, "verify", str(tmp_path / "bad.p2p"))
    assert res.returncode == 1 and "does not match its hash" in res.stdout + res.stderr


def test_hostile_attachment_names_are_shown_inert(pair, tmp_path: Path) -> None:
    a, b, cid = pair
    nasty = tmp_path / "[red]x \x1b]0;pwned\x07.txt"
    nasty.write_text("hi")
    pid = js(cli(a, "post", cid, "look", "--attach", str(nasty), "--json"))["id"]
    for res in (
        ok(cli(a, "feed", cid)),
        ok(cli(a, "attachments", cid, pid)),
        ok(cli(a, "chat", "show", cid)),
    ):
        assert "\x1b" not in res.stdout and "\x07" not in res.stdout
    assert "[red]x" in ok(cli(a, "feed", cid)).stdout  # shown as typed, not as markup


def test_attachment_vectors_import_as_declared(tmp_path: Path) -> None:
    import hashlib

    vectors = Path(__file__).resolve().parents[1] / "bundles" / "vectors"
    spec = json.loads((vectors / "manifest.json").read_text())
    for name in ("attachment.p2p", "attachment-bad-chunk.p2p"):
        home = make_home(tmp_path / name, "Reader")
        invites.join(home, (vectors / spec[name]["invite"]).read_bytes())
        r = import_bundle(home, [vectors / name])
        assert r.news.posts == spec[name]["posts"]
        aid = bytes.fromhex(spec[name]["attachment"]["hash"])
        if spec[name]["expect"] == "valid":
            out = io.BytesIO()
            BlobStore(home).save(aid, out)
            assert hashlib.sha256(out.getvalue()).hexdigest() == spec[name]["attachment"]["sha256"]
        else:
            assert any("does not match its hash" in x for x in r.attachments.refused)
            assert BlobStore(home).presence(aid).state == "partial"
        home.close()


def test_total_per_member_limit_refuses_the_attachment_over_it(homes, tmp_path: Path) -> None:
    a, b, c = homes
    first = _post_file(a, c, os.urandom(4000), "one.bin")
    second = _post_file(a, c, os.urandom(4000), "two.bin")
    cm.update_settings(a, c, **{attach.LIMIT_MEMBER: "6000"})
    _bundle(a, tmp_path / "x.p2p")
    r = import_bundle(b, [tmp_path / "x.p2p"])
    assert {"post with one.bin", "post with two.bin"} <= set(_posts(b, c))
    present = [BlobStore(b).presence(e.id) for e in (first, second)]
    assert sum(p is not None and p.state == "whole" for p in present) == 1
    assert any("per member" in why and "text was kept" in why for why in r.attachments.refused)
