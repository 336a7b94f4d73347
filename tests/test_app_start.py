"""`p2p app` and `p2p demo --app` for real: the address is printed, the page is
served, Ctrl-C stops the process cleanly (exit 0)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx


def _start(args: list[str]) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    env["BROWSER"] = "true"  # webbrowser.open runs `true`: no window in a test
    proc = subprocess.Popen(
        [sys.executable, "-m", "p2p.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("p2p app: "):
            return proc, line.split()[2]
    proc.wait(10)
    raise AssertionError("no address printed")


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    return out


def test_demo_in_the_app(tmp_path):
    proc, url = _start(["--home", str(tmp_path / "home"), "demo", "--app"])
    try:
        base = url.split("/?")[0]
        with httpx.Client(base_url=base, timeout=30) as client:
            page = client.get(url, follow_redirects=True)
            assert page.status_code == 200 and "token" not in str(page.url)
            assert "demo" in page.text.lower() or "village" in page.text.lower()
        with httpx.Client(timeout=30) as stranger:  # the same link, another browser
            assert stranger.get(url).status_code == 403
    finally:
        out = _stop(proc)
    assert "Stopped." in out


def test_app_no_browser_prints_the_address_and_stops_on_ctrl_c(tmp_path):
    proc, url = _start(["--home", str(tmp_path), "app", "--no-browser"])
    try:
        assert url.startswith("http://127.0.0.1:") and "?token=" in url
        with httpx.Client(timeout=30) as client:
            assert client.get(url.split("?")[0] + "communities").status_code == 403
            r = client.get(url, follow_redirects=True)
            assert r.url.path == "/setup"
    finally:
        _stop(proc)
