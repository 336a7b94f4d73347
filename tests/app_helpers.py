"""Shared by the app tests: an app on a fresh home, driven by a plain HTTP client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from starlette.testclient import TestClient

from p2p.app.state import AppState
from p2p.app.web import create_app

PORT = 48123
ORIGIN = f"http://127.0.0.1:{PORT}"
TOKEN = "launch-token-for-tests"


@contextmanager
def app_client(home: Path, sign_in: bool = True) -> Iterator[tuple[TestClient, AppState]]:
    state = AppState(home)
    app = create_app(state, PORT, TOKEN)
    client = TestClient(app, base_url=ORIGIN, headers={"origin": ORIGIN})
    try:
        if sign_in:
            r = client.get(f"/?token={TOKEN}", follow_redirects=False)
            assert r.status_code == 303
        yield client, state
    finally:
        client.close()
        state.close()


def ready(state: AppState, name: str = "Ha-eun") -> None:
    """An identity without a passphrase (scrypt would make every test slow);
    the set-up page with a passphrase has its own test."""
    from p2p import community as cm

    state.create_identity(None)
    cm.set_profile(state.home, name, None)


def wait_job(client: TestClient, url: str, tries: int = 400) -> str:
    """The job page at `url` once the job has ended (its text)."""
    for _ in range(tries):
        html = client.get(url).text
        if "Working…" not in html:
            return html
        time.sleep(0.05)
    raise AssertionError("job did not finish")
