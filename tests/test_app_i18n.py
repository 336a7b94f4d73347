"""The Korean catalogue covers every message in the code and templates, with
the same placeholders, and the pages switch language."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po

from tests.app_helpers import app_client, ready

APP = Path(__file__).resolve().parents[1] / "p2p" / "app"
PO = APP / "locale" / "ko" / "LC_MESSAGES" / "messages.po"


def _holes(text: str) -> set[str]:
    return set(re.findall(r"%\(\w+\)d|%\(\w+\)s|\{\w+\}", text))


def test_every_message_has_a_korean_translation_with_the_same_placeholders(tmp_path):
    pot = tmp_path / "messages.pot"
    pybabel = str(Path(sys.executable).parent / "pybabel")
    subprocess.run(
        [pybabel, "extract", "-F", str(APP / "babel.cfg"), "-k", "_", "-k", "N_",
         "-k", "ngettext:1,2", "-o", str(pot), str(APP)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with pot.open("rb") as fh:
        wanted = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(fh) if m.id}
    with PO.open("rb") as fh:
        catalog = read_po(fh, locale="ko")
    have = {}
    for m in catalog:
        if m.id and m.string:
            key = m.id if isinstance(m.id, str) else m.id[0]
            have[key] = m.string if isinstance(m.string, str) else m.string[0]
    missing = sorted(wanted - set(have))
    assert not missing, f"not translated in {PO.name}: {missing}"
    for msgid, text in have.items():
        assert _holes(msgid) == _holes(text), msgid


def test_the_language_switch_and_the_browser_language(tmp_path):
    with app_client(tmp_path) as (client, state):
        ready(state)
        assert "Communities" in client.get("/communities").text
        ko = client.get("/communities", headers={"accept-language": "ko-KR,ko;q=0.9"}).text
        assert '<html lang="ko">' in ko and "커뮤니티 만들기" in ko
        r = client.post("/lang", data={"lang": "ko", "back": "/communities"})
        assert "커뮤니티 만들기" in r.text
        r = client.post("/lang", data={"lang": "en", "back": "https://evil.example/"})
        assert r.url.path == "/" or r.url.path == "/communities"
        assert "Create a community" in client.get("/communities").text
