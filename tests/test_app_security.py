"""The app's guards, each tried with a plain HTTP client: a wrong Host, a
foreign Origin, a missing or wrong token, a reused token, member text with
<script>, framing and script headers, and the passphrase never kept."""

from __future__ import annotations

import re

from tests.app_helpers import ORIGIN, PORT, TOKEN, app_client, ready


def test_token_is_exchanged_once_for_a_strict_cookie_and_leaves_the_address(tmp_path):
    with app_client(tmp_path, sign_in=False) as (client, state):
        r = client.get(f"/communities?token={TOKEN}", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == "/communities"  # token gone from the address bar
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert TOKEN not in cookie
        # the same link a second time, from a browser without the cookie: refused
        client.cookies.clear()
        again = client.get(f"/?token={TOKEN}", follow_redirects=False)
        assert again.status_code == 403


def test_requests_without_the_cookie_or_with_a_wrong_token_are_refused(tmp_path):
    with app_client(tmp_path, sign_in=False) as (client, state):
        assert client.get("/communities").status_code == 403
        assert client.get("/?token=guess", follow_redirects=False).status_code == 403
        client.cookies.set("p2p_session", "forged")
        assert client.get("/communities").status_code == 403
        assert client.get("/events").status_code == 403
        assert client.get("/static/app.js").status_code == 403


def test_a_foreign_host_is_refused_even_with_the_cookie(tmp_path):
    """DNS rebinding: evil.example resolving to 127.0.0.1 carries another Host."""
    with app_client(tmp_path) as (client, state):
        ready(state)
        assert client.get("/communities").status_code == 200
        for host in ("evil.example", f"evil.example:{PORT}", f"localhost:{PORT}", "127.0.0.1"):
            r = client.get("/communities", headers={"host": host})
            assert r.status_code == 421, host


def test_state_changing_requests_need_the_apps_own_origin(tmp_path):
    with app_client(tmp_path) as (client, state):
        ready(state)
        for origin in ("http://evil.example", f"http://localhost:{PORT}", "null", None):
            headers = {"origin": origin} if origin else {}
            if origin is None:
                client.headers.pop("origin", None)
            r = client.post("/communities/create", data={"name": "Forged"}, headers=headers)
            assert r.status_code == 403, origin
        client.headers["origin"] = ORIGIN
        assert "Forged" not in client.get("/communities").text


def test_headers_forbid_inline_scripts_framing_and_sniffing(tmp_path):
    with app_client(tmp_path) as (client, state):
        ready(state)
        r = client.get("/communities")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert "<script>" not in r.text and "onclick" not in r.text.lower()
        assert re.findall(r"<script[^>]*>", r.text) == ['<script src="/static/app.js" defer>']


def test_member_text_with_script_is_shown_inert(tmp_path):
    with app_client(tmp_path) as (client, state):
        ready(state, name='<img src=x onerror="alert(1)">')
        r = client.post("/communities/create", data={"name": "<b>Bold</b> village"})
        cid = str(r.url).rsplit("/", 1)[1]
        r = client.post(f"/c/{cid}/post", data={"text": "<script>alert('x')</script>hello"})
        client.post(f"/c/{cid}/chat", data={"text": "<iframe src=//evil>"})
        for page in (f"/c/{cid}", f"/c/{cid}/chat", f"/c/{cid}/manage", "/communities"):
            html = client.get(page).text
            assert "<script>alert" not in html
            assert "<img src=x" not in html and "<iframe" not in html and "<b>Bold" not in html
        html = client.get(f"/c/{cid}").text
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;hello" in html
        assert "&lt;b&gt;Bold&lt;/b&gt; village" in html


def test_the_passphrase_is_never_kept(tmp_path, capfd):
    phrase = "a very particular passphrase 7"
    with app_client(tmp_path) as (client, state):
        client.post("/setup", data={"name": "A", "passphrase": phrase, "again": phrase})
    out, err = capfd.readouterr()
    assert phrase not in out + err
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert phrase.encode() not in f.read_bytes(), f
    # a fresh app on that home is locked until the passphrase is typed again
    with app_client(tmp_path) as (client, state):
        assert client.get("/communities").url.path == "/unlock"
        r = client.post("/unlock", data={"passphrase": "wrong one"})
        assert r.status_code == 400 and "Wrong passphrase" in r.text
        assert client.get("/communities").url.path == "/unlock"
        r = client.post("/unlock", data={"passphrase": phrase})
        assert r.url.path == "/communities"
        assert phrase not in repr(vars(state))
        r = client.post("/lock")
        assert r.url.path == "/unlock" and "Locked" in r.text
        assert client.get("/communities").url.path == "/unlock"


def test_bad_addresses_and_hostile_form_values_get_one_plain_line(tmp_path):
    with app_client(tmp_path) as (client, state):
        ready(state)
        r = client.get("/c/ffffffffffff")
        assert r.status_code == 400 and "no joined community" in r.text
        assert "Traceback" not in r.text
        assert client.get("/no/such/page").status_code == 404
        cid = str(client.post("/communities/create", data={"name": "X"}).url).rsplit("/", 1)[1]
        for path, data in (
            (f"/c/{cid}/role", {"member": "zz-not-hex", "role": "moderator"}),
            (f"/c/{cid}/ban", {"member": "00" * 40, "banned": "1"}),
            (f"/c/{cid}/react", {"post": "x", "emoji": "👍"}),
            (f"/c/{cid}/edit", {"post": "0" * 64, "text": "y"}),
            (f"/c/{cid}/post", {"text": "x" * 70_000}),
            (f"/c/{cid}/chat", {"text": "hi", "room": "\\x00" * 100}),
            (f"/c/{cid}/dm", {"to": "nobody", "text": "hi"}),
            ("/move/import", {"ticket": "forged"}),
            ("/jobs/999", {}),
        ):
            r = client.post(path, data=data) if data else client.get(path)
            assert r.status_code in (200, 400, 404), (path, r.status_code)
            assert "Traceback" not in r.text and "Internal Server Error" not in r.text, path


def test_pages_load_nothing_from_any_other_host(tmp_path):
    """Offline by construction: every script, style, font and image is the app's own."""
    with app_client(tmp_path) as (client, state):
        ready(state)
        cid = str(client.post("/communities/create", data={"name": "X"}).url).rsplit("/", 1)[1]
        pages = ["/communities", f"/c/{cid}", f"/c/{cid}/chat", f"/c/{cid}/dm", "/move", "/me"]
        for page in pages + [f"/c/{cid}/manage", f"/c/{cid}/invite", "/wifi"]:
            html = client.get(page).text
            for url in re.findall(r'(?:src|href|action)="([^"]*)"', html):
                assert url.startswith(("/", "#")), (page, url)
        css = client.get("/static/app.css").text
        assert all(u.startswith("/static/") for u in re.findall(r'url\("([^"]+)"\)', css))
        assert "http" not in client.get("/static/app.js").text
