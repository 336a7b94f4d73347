"""The application: routes from every page, static files, and the guard."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from p2p.app import live
from p2p.app.pages import attachments, chat, communities, dm, feed, manage, moving, setup, wifi
from p2p.app.security import Guard
from p2p.app.state import AppState
from p2p.app.view import EXPECTED, gettext, render
from p2p.errors import P2PError

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
    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: _http_problem,
            P2PError: _problem,
            ValueError: _problem,
            OSError: _problem,
            Exception: _crash,
        },
    )
    app.state.p2p = state
    return Guard(app, port, token)


async def _problem(request: Request, exc: Exception) -> Response:
    """A library error that escaped a page: its one plain line, never a traceback."""
    _ = gettext(request)
    assert isinstance(exc, EXPECTED)
    return await render(
        request, "problem.html", status=400, heading=_("That is not possible"), reason=str(exc)
    )


async def _http_problem(request: Request, exc: Exception) -> Response:
    _ = gettext(request)
    code = exc.status_code if isinstance(exc, HTTPException) else 500
    reason = _("There is no such page.") if code == 404 else _("That request was not understood.")
    return await render(request, "problem.html", status=code, heading=_("Not found"), reason=reason)


async def _crash(request: Request, exc: Exception) -> Response:
    _ = gettext(request)
    return await render(
        request,
        "problem.html",
        status=500,
        heading=_("Something went wrong"),
        reason=_("The app hit an unexpected problem ({kind}).").format(kind=type(exc).__name__),
    )
