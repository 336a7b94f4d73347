"""The application: routes from every page, static files, and the guard."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from p2p.app import live
from p2p.app.pages import attachments, chat, communities, dm, feed, manage, moving, setup, wifi
from p2p.app.security import Guard
from p2p.app.state import AppState

STATIC = Path(__file__).parent / "static"


def create_app(state: AppState, port: int, token: str) -> ASGIApp:
    routes = [
        *setup.routes,
        *communities.routes,
        *feed.routes,
        *chat.routes,
        *dm.routes,
        *manage.routes,
        *moving.routes,
        *wifi.routes,
        *attachments.routes,
        *live.routes,
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.p2p = state
    return Guard(app, port, token)
