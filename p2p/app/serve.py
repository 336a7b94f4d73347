"""Start the app: bind 127.0.0.1 on a free port, open the browser, serve until Ctrl-C."""

from __future__ import annotations

import secrets
import socket
import webbrowser
from collections.abc import Callable
from pathlib import Path

import uvicorn

from p2p.app.state import AppState
from p2p.app.web import create_app


def run(
    home_path: Path,
    *,
    open_browser: bool = True,
    port: int = 0,
    lan_host: str | None = None,
    lan_port: int = 7420,
    mdns: bool = True,
    say: Callable[[str], None] = print,
) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))  # loopback only, never all interfaces
    sock.listen(128)  # connections wait in the backlog until the server takes them,
    # so the browser opened below never finds the port closed
    bound = sock.getsockname()[1]
    token = secrets.token_urlsafe(32)
    state = AppState(home_path)
    state.lan.host, state.lan.port, state.lan.mdns = lan_host, lan_port, mdns
    app = create_app(state, bound, token)
    url = f"http://127.0.0.1:{bound}/?token={token}"
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,  # URLs carry the launch token; nothing of a request is logged
        timeout_graceful_shutdown=2,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    say(f"p2p app: {url}")
    say("Keep this window open; Ctrl-C stops the app.")
    if open_browser:
        webbrowser.open(url)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: a clean stop
        pass
    finally:
        state.close()
        sock.close()
    say("Stopped.")
