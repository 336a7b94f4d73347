"""Member text never reaches the terminal raw, and is never read as rich markup.

A hostile owner (Mallory) writes escape sequences, OSC 8 links, window-title
changes, C1 controls, bidi overrides and rich markup into everything she can
sign: the community's name, description and rules, her name and bio, posts,
a post that forges another author's header, a chat room and message, a
reaction, a direct message. Ann receives it all through a bundle and looks at
it with every command; nothing she sees may carry a control character, and the
markup must show as the literal text Mallory typed.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2p.cli import safe
from tests.helpers import cli

ESC = "\x1b"
CSI_RED = ESC + "[31mRED" + ESC + "[0m"
OSC8 = ESC + "]8;;http://evil.example/" + ESC + "\\click me" + ESC + "]8;;" + ESC + "\\"
TITLE = ESC + "]0;pwned" + "\x07"
C1 = "\x9b" + "2J" + "\x9d0;t\x9c"
BIDI = "abc\u202edcba\u2066x\u2069\u200f"
MARKUP = "[bold red]shouting[/] [link=http://evil.example]x[/link] :smile:"
HOSTILE = f"{CSI_RED} {OSC8} {TITLE} {C1} {BIDI} {MARKUP}"
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0, res.stderr
    return res


def clean_output(res: subprocess.CompletedProcess) -> str:
    out = res.stdout + res.stderr
    assert UNSAFE.search(out) is None, repr(UNSAFE.findall(out)[:5])
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("hostile")
    mal, ann = tmp / "mallory", tmp / "ann"
    ok(cli(mal, "init", "--no-passphrase", "--name", "Mallory" + CSI_RED + BIDI))
    ok(cli(mal, "profile", "set", "--bio", HOSTILE + "\nsecond line"))
    made = ok(
        cli(mal, "community", "create", "Town" + TITLE + MARKUP, "--description", HOSTILE, "--json")
    )
    cid = json.loads(made.stdout)["id"]
    ok(cli(mal, "community", "settings", cid, "--rules", "be nice\n" + OSC8))
    ok(cli(mal, "community", "invite", cid, "--out", str(tmp / "inv"), "--no-passphrase"))
    ok(cli(ann, "init", "--no-passphrase", "--name", "Ann"))
    ok(cli(ann, "community", "join", str(tmp / "inv")))
    ok(cli(ann, "post", cid, "hello from Ann"))
    ok(cli(ann, "export", "--out", str(tmp / "ann.p2p")))
    ok(cli(mal, "import", str(tmp / "ann.p2p")))
    ann_fp = json.loads(ok(cli(ann, "whoami", "--json")).stdout)["fingerprint"]
    forged = f"innocent\nAnn {ann_fp}  2026-01-01 10:00  0123456789abcdef\n    I resign."
    first = json.loads(ok(cli(mal, "post", cid, HOSTILE, "--json")).stdout)
    ok(cli(mal, "post", cid, forged))
    ok(cli(mal, "react", cid, first["id"], ESC + "[5m!" + "\u202e"))
    ok(cli(mal, "chat", "send", cid, HOSTILE + "\nfake: line", "--room", "r" + ESC + "[1m"))
    ok(cli(mal, "dm", "send", cid, "Ann", HOSTILE))
    bundle = tmp / "mal.p2p"
    ok(cli(mal, "export", "--out", str(bundle)))
    imported = ok(cli(ann, "import", str(bundle)))
    return {"ann": ann, "cid": cid, "bundle": bundle, "import": imported, "fp": ann_fp}


def test_every_view_is_clean(world) -> None:
    ann, cid = world["ann"], world["cid"]
    clean_output(world["import"])
    views = [
        ["feed", cid],
        ["chat", "show", cid, "--room", "r" + ESC + "[1m"],
        ["chat", "rooms", cid],
        ["dm", "show", cid],
        ["community", "show", cid],
        ["community", "list"],
        ["doc", "list", cid],
        ["verify", str(world["bundle"])],
        ["inspect", str(world["bundle"])],
    ]
    seen = ""
    for argv in views:
        seen += clean_output(ok(cli(ann, *argv)))
    # what Mallory typed is shown, neutralised, not obeyed and not dropped
    assert "\u241b[31mRED" in seen and "\u241b]8;;http://evil.example/" in seen
    assert "<U+202E>" in seen and "<U+009B>" in seen
    assert MARKUP in seen  # markup printed literally: not bold, not a link, no emoji


def test_markup_is_literal_and_names_too(world) -> None:
    out = ok(cli(world["ann"], "community", "show", world["cid"])).stdout
    assert "Town\u241b]0;pwned\u2407" + MARKUP in out
    assert "Mallory\u241b[31mRED\u241b[0mabc<U+202E>dcba" in out


def test_a_post_cannot_forge_a_header(world) -> None:
    out = ok(cli(world["ann"], "feed", world["cid"])).stdout
    fp = world["fp"]
    headers = [line for line in out.splitlines() if fp in line]
    assert headers, out
    real = [h for h in headers if h.startswith("Ann ")]
    forged = [h for h in headers if "0123456789abcdef" in h]
    assert len(real) == 1 and len(forged) == 1, headers
    assert forged[0].startswith("  \u2502 ")  # inside the post's bar, not at a header's place
    assert any(line.startswith("  \u2502     I resign.") for line in out.splitlines())


def test_json_keeps_the_text_but_escapes_what_a_terminal_obeys(world) -> None:
    res = ok(cli(world["ann"], "feed", world["cid"], "--json"))
    assert UNSAFE.search(res.stdout) is None  # \u escapes in the JSON text...
    texts = [p["text"] for p in json.loads(res.stdout)]
    assert HOSTILE in texts  # ...but the value is exactly what was signed


@given(st.text())
def test_clean_never_lets_a_control_through(text: str) -> None:
    once = safe.clean(text)
    assert UNSAFE.search(once) is None and "\n" not in once
    assert safe.clean(once) == once
    block = safe.clean_block(text, "  | ")
    for i, line in enumerate(block.split("\n")):
        assert UNSAFE.search(line) is None
        assert i == 0 or line.startswith("  | ")
