"""Attachments in the app: an image shows from its thumbnail and opens inline,
an HTML file is only ever a download, both with nosniff; a file that has not
arrived yet is shown as such."""

from __future__ import annotations

import io
import re

from PIL import Image

from tests.app_helpers import app_client, ready
from tests.helpers import share


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 120, 90)).save(buf, "PNG")
    return buf.getvalue()


def test_images_inline_from_thumbnails_and_active_files_only_as_downloads(tmp_path):
    with app_client(tmp_path / "a") as (a, sa), app_client(tmp_path / "b") as (b, sb):
        ready(sa)
        ready(sb, "Min-jun")
        r = a.post("/communities/create", data={"name": "Photos"})
        cid = str(r.url).rsplit("/", 1)[1]
        invite = a.post(f"/c/{cid}/invite", data={"passphrase": ""}).content
        b.post("/communities/join", files={"file": ("i.p2p", invite)})
        evil = b"<html><script>alert(document.cookie)</script></html>"
        r = a.post(
            f"/c/{cid}/post",
            data={"text": "the new bridge"},
            files=[
                ("files", ("bridge.png", _png(), "image/png")),
                ("files", ("page.html", evil, "text/html")),
            ],
        )
        assert r.status_code == 200, r.text
        thumbs = re.findall(rf'src="(/c/{cid}/att/[0-9a-f]+/thumb)"', r.text)
        assert len(thumbs) == 1
        t = a.get(thumbs[0])
        assert t.headers["content-type"] == "image/webp" and t.content[:4] == b"RIFF"
        assert t.headers["x-content-type-options"] == "nosniff"
        links = dict(
            (name, href)
            for href, name in re.findall(
                rf'<a href="(/c/{cid}/att/[0-9a-f]+)" download>📎 ([^<]+)</a>', r.text
            )
        )
        img = a.get(links["bridge.png"])
        assert img.headers["content-type"] in ("image/png", "image/jpeg")
        assert img.headers["content-disposition"].startswith("inline")
        page = a.get(links["page.html"])
        assert page.content == evil
        assert page.headers["content-type"] == "application/octet-stream"
        assert page.headers["content-disposition"].startswith("attachment")
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in page.headers["content-security-policy"]

        # B has the post but not yet the files: shown as not here yet
        share(sa.home, sb.home)
        html = b.get(f"/c/{cid}").text
        assert "the new bridge" in html and "not here yet" in html
        assert "download>📎 page.html" not in html


def test_a_chat_message_may_carry_a_photo(tmp_path):
    with app_client(tmp_path) as (a, sa):
        ready(sa)
        r = a.post("/communities/create", data={"name": "Photos"})
        cid = str(r.url).rsplit("/", 1)[1]
        r = a.post(
            f"/c/{cid}/chat",
            data={"text": "", "room": "general"},
            files=[("files", ("boat.png", _png(), "image/png"))],
        )
        assert r.status_code == 200 and "boat.png" in r.text
        assert re.search(rf'src="/c/{cid}/att/[0-9a-f]+/thumb"', r.text)
        r = a.post(f"/c/{cid}/chat", data={"text": "   ", "room": "general"})
        assert "That did not work" in r.text  # no text and no file
