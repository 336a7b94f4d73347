"""The app in a real browser (Debian's Chromium driven by Playwright, headless):
two people, each with their own home and their own `p2p app` process, create a
community, invite and join, post, reply, react and chat; sync over Wi-Fi on
127.0.0.1 and see each other's content appear live; a USB drop-box sync; a
tampered bundle refused. Screenshots of the main pages in English and Korean
are taken on the way (P2P_SCREENSHOTS=docs copies them to docs/screenshots/)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import cli

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
WAIT = 15_000  # ms for anything to appear

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
    pytest.mark.timeout(240),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@contextmanager
def running_app(home: Path) -> Iterator[str]:
    """`p2p app` for real, in its own process; yields the address it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p2p.cli.main",
            "--home",
            str(home),
            "app",
            "--no-browser",
            "--lan-host",
            "127.0.0.1",
            "--lan-port",
            "0",
            "--no-mdns",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("p2p app: http://127.0.0.1:"), line
        yield line.split()[2]
    finally:
        proc.send_signal(2)  # Ctrl-C
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stdout.read() if proc.stdout else ""


class Shots:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def take(self, page, name: str, full: bool = True) -> None:  # noqa: ANN001
        page.evaluate("document.fonts.ready.then(() => true)")
        page.screenshot(path=str(self.folder / f"{name}.png"), full_page=full)

    def publish(self) -> None:
        if os.environ.get("P2P_SCREENSHOTS") == "docs":
            DOCS.mkdir(parents=True, exist_ok=True)
            for f in self.folder.glob("*.png"):
                shutil.copy(f, DOCS / f.name)


def _switch(page, lang: str) -> None:  # noqa: ANN001
    page.select_option("#lang-select", lang)
    page.wait_for_load_state()
    page.wait_for_selector(f'html[lang="{lang}"]')


def _tell(browser) -> None:  # noqa: ANN001
    for n, context in enumerate(browser.contexts):
        for page in context.pages:
            try:
                text = page.inner_text("main", timeout=2000)
            except Exception as exc:  # noqa: BLE001 - a diagnostic only
                text = f"({exc.__class__.__name__})"
            print(f"--- context {n} {page.url}\n{text[:1500]}")


def _no_sideways_scroll(page) -> bool:  # noqa: ANN001
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def _live(page) -> None:  # noqa: ANN001
    page.wait_for_selector("body[data-live-ready]", timeout=WAIT)


def test_two_people_in_the_browser(tmp_path):
    shots = Shots(tmp_path / "shots")
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    assert cli(home_b, "init", "--no-passphrase", "--name", "Min-jun").returncode == 0
    stick = tmp_path / "stick"
    stick.mkdir()
    with (
        running_app(home_a) as url_a,
        running_app(home_b) as url_b,
        sync_api.sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            a = browser.new_context(viewport={"width": 1100, "height": 800}, locale="en-US")
            b = browser.new_context(viewport={"width": 1100, "height": 800}, locale="en-US")
            a.set_default_timeout(WAIT)
            b.set_default_timeout(WAIT)
            pa, pb = a.new_page(), b.new_page()
            errors: list[str] = []
            for p in (pa, pb):
                p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

            # A sets up an identity with a passphrase; the token leaves the address bar
            pa.goto(url_a)
            assert "token" not in pa.url and pa.url.endswith("/setup")
            shots.take(pa, "en-setup")
            pa.fill("#name", "Ha-eun")
            pa.fill("#passphrase", "river stones 42")
            pa.fill("#again", "river stones 42")
            pa.click("text=Create my identity")
            pa.wait_for_selector(".fp-big", timeout=90_000)  # scrypt, on a loaded machine
            shots.take(pa, "en-me")

            # keyboard only: the first Tab reaches "Skip to content", the next the menu
            pa.keyboard.press("Tab")
            assert pa.evaluate("document.activeElement.className") == "skip"
            pa.keyboard.press("Tab")
            pa.keyboard.press("Tab")
            assert pa.evaluate("document.activeElement.textContent") == "Communities"
            pa.keyboard.press("Enter")
            pa.wait_for_selector("#cname")

            # A creates a community and writes an invite; B joins with it
            pa.fill("#cname", "River villages")
            pa.fill("#cdesc", "News and help between the five river villages")
            pa.click("button:has-text('Create')")
            pa.wait_for_selector("h1:has-text('River villages')")
            cid = pa.url.rsplit("/", 1)[1]
            pa.click(".tabs >> text=Invite")
            with pa.expect_download() as dl:
                pa.click("text=Download the invite")
            invite = tmp_path / "invite.p2p"
            dl.value.save_as(invite)

            pb.goto(url_b)
            assert pb.url.endswith("/communities")
            pb.set_input_files("#jfile", str(invite))
            pb.click("button:has-text('Join')")
            pb.wait_for_selector("text=You joined River villages")

            # A posts, B replies and reacts (on B's side until they sync)
            pa.goto(f"{url_a.split('/?')[0]}/c/{cid}")
            pa.fill("#text", "Seed swap on Thursday at the hall")
            pa.click("button:has-text('Post')")
            pa.wait_for_selector("text=Seed swap on Thursday")
            pb.fill("#text", "<script>alert('x')</script>Min-jun here, hello!")
            pb.click("button:has-text('Post')")
            pb.wait_for_selector("text=Min-jun here, hello!")

            # Wi-Fi sync on 127.0.0.1: A listens, B syncs with A's address
            base_a, base_b = url_a.split("/?")[0], url_b.split("/?")[0]
            pa.goto(f"{base_a}/wifi")
            pa.click("text=Start Wi-Fi sync")
            address = pa.text_content(".address")
            assert address and address.startswith("127.0.0.1:"), address
            assert not address.endswith(":7420")  # --lan-port 0: a free port, not the usual one
            feed_a = a.new_page()
            feed_a.goto(f"{base_a}/c/{cid}")
            _live(feed_a)
            feed_b = b.new_page()
            feed_b.goto(f"{base_b}/c/{cid}")
            _live(feed_b)
            assert feed_b.locator("text=Seed swap on Thursday").count() == 0
            pb.goto(f"{base_b}/wifi")
            pb.click("text=Start Wi-Fi sync")
            pb.fill("#peer", address)
            pb.click("button:has-text('Sync now')")
            pb.wait_for_selector(".sessions li.ok")
            assert "1 new post" in pb.text_content(".sessions")
            # both open feeds change without a reload
            feed_b.wait_for_selector("text=Seed swap on Thursday at the hall")
            feed_a.wait_for_selector("text=Min-jun here, hello!")
            assert feed_a.locator("script:has-text('alert')").count() == 0
            pa.wait_for_selector(".sessions li.ok")  # A's page lists the session live
            shots.take(pa, "en-wifi")

            # B replies and reacts; A chats; after one more sync each sees it live
            post = feed_b.locator("li:has-text('Seed swap on Thursday') >> article").first
            post.locator("button[aria-label='React with 👍']").click()
            feed_b.wait_for_selector("button.reaction.mine")
            post = feed_b.locator("li:has-text('Seed swap on Thursday') >> article").first
            post.locator("summary").click()
            post.locator("textarea[name=text]").first.fill("I will bring jars")
            post.locator("button:has-text('Reply')").first.click()
            feed_b.wait_for_selector(".replies >> text=I will bring jars")
            chat_a = a.new_page()
            chat_a.goto(f"{base_a}/c/{cid}/chat")
            chat_a.fill("#chat-text", "Who has a spare battery?")
            chat_a.press("#chat-text", "Enter")
            chat_a.wait_for_selector(".messages >> text=Who has a spare battery?")
            chat_b = b.new_page()
            chat_b.goto(f"{base_b}/c/{cid}/chat")
            _live(chat_b)
            pb.fill("#peer", address)
            pb.click("button:has-text('Sync now')")
            chat_b.wait_for_selector(".messages >> text=Who has a spare battery?")
            feed_a.wait_for_selector(".replies >> text=I will bring jars")
            feed_a.wait_for_selector("button.reaction:has-text('👍 1')")
            chat_b.fill("#chat-text", "I do, come by the mill")
            chat_b.press("#chat-text", "Enter")
            chat_b.wait_for_selector(".messages >> text=I do, come by the mill")
            _live(chat_a)
            pb.goto(f"{base_b}/wifi")
            pb.fill("#peer", address)
            pb.click("button:has-text('Sync now')")
            chat_a.wait_for_selector(".messages >> text=I do, come by the mill")
            shots.take(chat_a, "en-chat")
            feed_a.reload()
            shots.take(feed_a, "en-feed")

            # USB drop box: A writes a new post to the stick, B picks it up
            pa.goto(f"{base_a}/c/{cid}")
            pa.fill("#text", "The ferry runs again on Monday")
            pa.click("button:has-text('Post')")
            pa.goto(f"{base_a}/move")
            shots.take(pa, "en-move")
            pa.fill("#folder", str(stick))
            pa.click("button:has-text('Sync with USB stick')")
            pa.wait_for_selector(".status.done")
            pb.goto(f"{base_b}/move")
            pb.fill("#folder", str(stick))
            pb.click("button:has-text('Sync with USB stick')")
            pb.wait_for_selector(".status.done")
            assert "1 new post" in pb.text_content(".summary")
            shots.take(pb, "en-usb-done")
            feed_b.wait_for_selector("text=The ferry runs again on Monday")

            # an import run from the command line, beside the app, shows up live too
            pa.goto(f"{base_a}/c/{cid}")
            pa.fill("#text", "Market moved to Saturday")
            pa.click("button:has-text('Post')")
            pa.wait_for_selector("text=Market moved to Saturday")
            carried = tmp_path / "by-hand.p2p"
            made = cli(home_a, "export", "--out", str(carried), P2P_PASSPHRASE="river stones 42")
            assert made.returncode == 0, made.stderr
            assert cli(home_b, "import", str(carried)).returncode == 0
            feed_b.wait_for_selector("text=Market moved to Saturday")

            # a tampered bundle is refused with a readable message
            bundle = next(p for p in stick.iterdir() if p.suffix == ".p2p")
            data = bytearray(bundle.read_bytes())
            at = data.find(b"ferry")
            assert at > 0
            data[at : at + 5] = b"FERRY"
            bad = tmp_path / "tampered.p2p"
            bad.write_bytes(bytes(data))
            pb.goto(f"{base_b}/move")
            pb.set_input_files("#bfile", str(bad))
            pb.click("button:has-text('Check the bundle')")
            pb.wait_for_selector(".card.refused")
            assert "refused" in pb.text_content(".card.refused")
            assert pb.locator("text=Import it").count() == 0
            shots.take(pb, "en-refused")

            # a sealed direct message, chosen by name AND fingerprint
            pa.goto(f"{base_a}/c/{cid}/dm")
            option = pa.locator("#to option", has_text="Min-jun")
            assert "-" in (option.text_content() or "")  # the fingerprint is in the choice
            pa.select_option("#to", option.get_attribute("value"))
            pa.fill("#dm-text", "Can you bring the ladder on Thursday?")
            pa.click("button:has-text('Send sealed')")
            pa.wait_for_selector(".messages >> text=Can you bring the ladder")
            shots.take(pa, "en-dm")

            # members page, and Korean
            pa.goto(f"{base_a}/c/{cid}/manage")
            shots.take(pa, "en-members")
            for name, page, path in (
                ("ko-feed", feed_a, f"/c/{cid}"),
                ("ko-chat", chat_a, f"/c/{cid}/chat"),
                ("ko-members", pa, f"/c/{cid}/manage"),
                ("ko-move", pa, "/move"),
                ("ko-wifi", pa, "/wifi"),
                ("ko-me", pa, "/me"),
            ):
                page.goto(base_a + path)
                if page.get_attribute("html", "lang") != "ko":
                    _switch(page, "ko")
                shots.take(page, name)
            assert pa.get_attribute("html", "lang") == "ko"
            phone = browser.new_context(viewport={"width": 390, "height": 844})
            # the phone-sized window belongs to nobody: it sees the refusal page only
            pp = phone.new_page()
            pp.goto(base_a + "/communities")
            assert "Not signed in" in pp.content()
            feed_a.set_viewport_size({"width": 390, "height": 844})
            feed_a.goto(f"{base_a}/c/{cid}")
            shots.take(feed_a, "ko-feed-phone")
            assert _no_sideways_scroll(feed_a)
            # a reader who set a large default font (32 px instead of 16): still fits
            cdp = a.new_cdp_session(feed_a)
            cdp.send("Page.setFontSizes", {"fontSizes": {"standard": 32, "fixed": 26}})
            feed_a.set_viewport_size({"width": 1100, "height": 800})
            _switch(feed_a, "en")
            feed_a.goto(f"{base_a}/c/{cid}")
            assert feed_a.evaluate("parseFloat(getComputedStyle(document.body).fontSize)") > 30
            assert _no_sideways_scroll(feed_a)
            # (the visible part only: a full-page capture resets the font setting)
            shots.take(feed_a, "en-feed-large-font", full=False)
            assert not [e for e in errors if "Content Security Policy" in e], errors
        except Exception:
            _tell(browser)  # what each open page showed, to see why it failed
            raise
        finally:
            browser.close()
    shots.publish()
