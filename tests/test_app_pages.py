"""Every page through a plain HTTP client, two people in two homes: create,
invite and join, post, reply, react, edit, delete, chat, direct messages,
moderation, export, verify-then-import, a tampered bundle, the USB drop box."""

from __future__ import annotations

import re

import pytest

from tests.app_helpers import app_client, ready, wait_job


def _cid(response) -> str:  # noqa: ANN001
    return str(response.url).rstrip("/").rsplit("/", 1)[1]


def _post_ids(html: str) -> list[str]:
    return re.findall(r'id="p-([0-9a-f]+)"', html)


def _id_of(html: str, text: str) -> str:
    """The id of the post showing `text` (its own part of the page, not its replies)."""
    parts = re.split(r'id="p-([0-9a-f]+)"', html)
    for pid, body in zip(parts[1::2], parts[2::2], strict=True):
        if text in body:
            return pid
    raise AssertionError(f"no post shows {text!r}")


def test_two_people_invite_join_post_and_move_a_bundle(tmp_path):
    with app_client(tmp_path / "a") as (a, sa), app_client(tmp_path / "b") as (b, sb):
        ready(sa, "Ha-eun")
        ready(sb, "Min-jun")
        r = a.post("/communities/create", data={"name": "River villages"})
        cid = _cid(r)
        assert "River villages" in r.text
        invite = a.post(f"/c/{cid}/invite", data={"passphrase": ""})
        assert invite.headers["content-disposition"].startswith("attachment")
        r = b.post(
            "/communities/join",
            files={"file": ("invite.p2p", invite.content, "application/octet-stream")},
        )
        assert r.url.path == f"/c/{cid}" and "You joined River villages" in r.text

        r = a.post(f"/c/{cid}/post", data={"text": "Seed swap on Thursday"})
        first = _post_ids(r.text)[0]
        a.post(f"/c/{cid}/post", data={"text": "Bring jars", "reply_to": first})
        a.post(f"/c/{cid}/react", data={"post": first, "emoji": "👍"})
        r = a.post(f"/c/{cid}/post", data={"text": "typo here"})
        typo = _id_of(r.text, "typo here")
        a.post(f"/c/{cid}/edit", data={"post": typo, "text": "fixed text"})
        r = a.post(f"/c/{cid}/delete", data={"post": typo, "sure": "on"})
        assert "(deleted by its author)" in r.text and "fixed text" not in r.text
        r = a.post(f"/c/{cid}/chat", data={"text": "Who has a battery?", "room": "market"})
        assert "#market" in r.text and "Who has a battery?" in r.text

        # A writes a bundle; B checks it, sees who signed it, then imports it
        bundle = a.post("/move/export", data={"community": cid})
        assert bundle.status_code == 200 and bundle.content
        r = b.post("/move/verify", files={"file": ("x.p2p", bundle.content)})
        assert "Every signature checked out" in r.text
        assert sa.identity is not None and sa.identity.fingerprint in r.text
        assert "Seed swap" not in b.get(f"/c/{cid}").text  # nothing applied yet
        ticket = re.search(r'name="ticket" value="([^"]+)"', r.text).group(1)
        r = b.post("/move/import", data={"ticket": ticket})
        html = wait_job(b, r.url.path)
        assert "3 new posts" in html and "1 new member" in html
        feed = b.get(f"/c/{cid}").text
        assert "Seed swap on Thursday" in feed and "Bring jars" in feed and "👍 1" in feed
        assert "Who has a battery?" in b.get(f"/c/{cid}/chat?room=market").text

        # B replies and sends A a sealed direct message, then B's bundle goes back
        b.post(f"/c/{cid}/post", data={"text": "I have jars", "reply_to": first})
        akey = sa.identity.public_key.hex()
        r = b.post(f"/c/{cid}/dm", data={"to": akey, "text": "See you at the hall"})
        assert "See you at the hall" in r.text
        back = b.post("/move/export", data={"community": cid})
        r = a.post("/move/verify", files={"file": ("y.p2p", back.content)})
        ticket = re.search(r'name="ticket" value="([^"]+)"', r.text).group(1)
        html = wait_job(a, a.post("/move/import", data={"ticket": ticket}).url.path)
        assert "1 direct message for you" in html
        assert "I have jars" in a.get(f"/c/{cid}").text
        r = a.get(f"/c/{cid}/dm?with={sb.identity.public_key.hex()}")
        assert "See you at the hall" in r.text and "Min-jun" in r.text

        # moderation by the owner: hide B's reply, ban B, lift the ban
        bkey = sb.identity.public_key.hex()
        mine = [p for p in _post_ids(a.get(f"/c/{cid}").text) if p.startswith(bkey[:8])]
        reply = mine[0]
        r = a.post(f"/c/{cid}/hide", data={"post": reply})
        assert "I have jars" not in r.text
        r = a.get(f"/c/{cid}/manage")
        assert reply in r.text  # listed as hidden, with "Show again"
        r = a.post(f"/c/{cid}/unhide", data={"post": reply})
        assert "Shown again" in r.text
        r = a.post(f"/c/{cid}/ban", data={"member": bkey, "banned": "1"})
        assert "Lift the ban" in r.text
        assert "I have jars" not in a.get(f"/c/{cid}").text
        a.post(f"/c/{cid}/ban", data={"member": bkey, "banned": "0"})
        assert "I have jars" in a.get(f"/c/{cid}").text
        r = a.post(f"/c/{cid}/role", data={"member": bkey, "role": "moderator"})
        assert "Make a plain member" in r.text
        # B may not change the settings until the role arrives; A may
        r = a.post(f"/c/{cid}/settings", data={"name": "River", "description": "", "rules": "Kind"})
        assert "Settings saved" in r.text
        r = b.post(f"/c/{cid}/settings", data={"name": "Mine", "description": "", "rules": ""})
        assert "That did not work" in r.text


def test_a_tampered_bundle_is_refused_with_a_readable_message(tmp_path):
    with app_client(tmp_path / "a") as (a, sa), app_client(tmp_path / "b") as (b, sb):
        ready(sa)
        ready(sb)
        cid = _cid(a.post("/communities/create", data={"name": "Hall"}))
        invite = a.post(f"/c/{cid}/invite", data={"passphrase": ""}).content
        b.post("/communities/join", files={"file": ("i.p2p", invite)})
        a.post(f"/c/{cid}/post", data={"text": "original words"})
        data = bytearray(a.post("/move/export", data={"community": cid}).content)
        at = data.find(b"original words")
        assert at > 0
        data[at : at + 8] = b"FORGED!!"
        r = b.post("/move/verify", files={"file": ("t.p2p", bytes(data))})
        assert r.status_code == 422
        assert "refused" in r.text and "Import it" not in r.text
        assert "Traceback" not in r.text
        cut = a.post("/move/export", data={"community": cid}).content[:-40]
        r = b.post("/move/verify", files={"file": ("cut.p2p", cut)})
        assert r.status_code == 422 and "This bundle was refused" in r.text
        assert "original words" not in b.get(f"/c/{cid}").text
        assert not list((tmp_path / "b" / "tmp" / "app-uploads").iterdir())


def test_usb_drop_box_through_the_page(tmp_path):
    stick = tmp_path / "stick"
    stick.mkdir()
    with app_client(tmp_path / "a") as (a, sa), app_client(tmp_path / "b") as (b, sb):
        ready(sa)
        ready(sb, "Min-jun")
        cid = _cid(a.post("/communities/create", data={"name": "Ship"}))
        invite = a.post(f"/c/{cid}/invite", data={"passphrase": ""}).content
        b.post("/communities/join", files={"file": ("i.p2p", invite)})
        a.post(f"/c/{cid}/post", data={"text": "from the bridge"})
        html = wait_job(a, a.post("/move/usb", data={"folder": str(stick)}).url.path)
        assert "wrote 1 bundle for the others" in html
        # a damaged bundle left on the stick is set aside; the good one still arrives
        good = next(stick.glob("*.p2p"))
        (stick / "damaged.p2p").write_bytes(good.read_bytes()[:-50])
        html = wait_job(b, b.post("/move/usb", data={"folder": str(stick)}).url.path)
        assert "1 new post" in html and "1 bundle imported" in html
        assert "1 bundle set aside because it was damaged" in html
        assert "damaged.p2p" in html
        assert "from the bridge" in b.get(f"/c/{cid}").text
        r = b.post("/move/usb", data={"folder": str(tmp_path / "nothing")})
        assert "is not a folder" in r.text


def test_search_finds_posts_and_leaves_out_hidden_ones(tmp_path):
    with app_client(tmp_path) as (a, sa):
        ready(sa)
        cid = _cid(a.post("/communities/create", data={"name": "Search"}))
        a.post(f"/c/{cid}/post", data={"text": "the ferry leaves at noon"})
        a.post(f"/c/{cid}/post", data={"text": "bread at the bakery"})
        r = a.post(f"/c/{cid}/post", data={"text": "ferry tickets are free"})
        hits = a.get(f"/c/{cid}?q=ferry").text
        assert "the ferry leaves at noon" in hits and "ferry tickets are free" in hits
        assert "bread at the bakery" not in hits
        ticket = _id_of(r.text, "ferry tickets are free")
        a.post(f"/c/{cid}/hide", data={"post": ticket})
        hits = a.get(f"/c/{cid}?q=tickets").text
        assert "ferry tickets are free" not in hits and "Nothing found" in hits


def test_the_feed_shows_the_newest_threads_first_and_pages_older_ones(tmp_path):
    from p2p import content
    from p2p.app.pages.feed import PAGE

    with app_client(tmp_path) as (a, sa):
        ready(sa)
        cid = _cid(a.post("/communities/create", data={"name": "Busy"}))
        from p2p import community as cm

        com = cm.resolve(sa.home, cid)
        for n in range(PAGE + 3):
            content.post(sa.home, com, f"news number {n:03d}")
        html = a.get(f"/c/{cid}").text
        assert html.index(f"news number {PAGE + 2:03d}") < html.index("news number 010")
        assert "news number 002" not in html and "3 more threads" in html
        html = a.get(f"/c/{cid}?show={PAGE * 2}").text
        assert "news number 000" in html and "more thread" not in html
        assert a.get(f"/c/{cid}?show=nonsense").status_code == 200


@pytest.mark.slow  # two age/scrypt operations: seconds each on a loaded machine
def test_a_private_community_travels_by_a_sealed_invite(tmp_path):
    with app_client(tmp_path / "a") as (a, sa), app_client(tmp_path / "b") as (b, sb):
        ready(sa)
        ready(sb, "Min-jun")
        r = a.post("/communities/create", data={"name": "Clinic staff", "private": "on"})
        cid = _cid(r)
        r = a.post(f"/c/{cid}/invite", data={"passphrase": ""})
        assert "needs a passphrase" in r.text  # not written unsealed by accident
        invite = a.post(f"/c/{cid}/invite", data={"passphrase": "blue heron"}).content
        r = b.post("/communities/join", files={"file": ("i.p2p", invite)})
        assert "type the passphrase" in r.text
        r = b.post(
            "/communities/join",
            files={"file": ("i.p2p", invite)},
            data={"passphrase": "blue heron"},
        )
        assert r.url.path == f"/c/{cid}" and "You joined Clinic staff" in r.text


def test_join_from_an_invite_typed_as_a_path(tmp_path):
    with app_client(tmp_path / "a") as (a, sa), app_client(tmp_path / "b") as (b, sb):
        ready(sa)
        ready(sb)
        cid = _cid(a.post("/communities/create", data={"name": "Open hall"}))
        stick = tmp_path / "invite.p2p"
        stick.write_bytes(a.post(f"/c/{cid}/invite", data={"passphrase": ""}).content)
        r = b.post("/communities/join", data={"path": str(tmp_path / "missing.p2p")})
        assert "That did not work" in r.text
        r = b.post("/communities/join", data={"path": str(stick)})
        assert r.url.path == f"/c/{cid}"


def test_leave_asks_for_confirmation_then_removes_the_community(tmp_path):
    with app_client(tmp_path) as (a, sa):
        ready(sa)
        cid = _cid(a.post("/communities/create", data={"name": "Short-lived"}))
        a.post(f"/c/{cid}/post", data={"text": "soon gone"})
        r = a.post(f"/c/{cid}/leave", data={})
        assert "Tick the box" in r.text
        r = a.post(f"/c/{cid}/leave", data={"sure": "on"})
        assert r.url.path == "/communities" and "You left the community" in r.text
        assert "Short-lived" not in r.text
        assert a.get(f"/c/{cid}").status_code == 400


def test_a_live_refresh_does_not_eat_the_next_pages_message(tmp_path):
    with app_client(tmp_path) as (a, sa):
        ready(sa)
        r = a.post("/communities/create", data={"name": "Flash"}, follow_redirects=False)
        assert "Created Flash" not in a.get("/communities", headers={"x-live": "1"}).text
        assert "Created Flash" in a.get(r.headers["location"]).text
