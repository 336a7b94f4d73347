"""Server-sent events: one `change` event whenever the store, a job or the LAN
node moves on, so open pages refresh their live parts without a reload.

The store is watched through `PRAGMA data_version` on a connection of its
own, which changes whenever ANY other connection commits (this app, a LAN
session, an import run from the CLI in another terminal).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator

from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.routing import Route

from p2p.app.view import app_state
from p2p.store import STORE_NAME

POLL = 0.4  # seconds; a cheap PRAGMA read


async def events(request: Request) -> EventSourceResponse:
    state = app_state(request)

    async def stream() -> AsyncIterator[dict]:
        db = sqlite3.connect(
            f"file:{state.home_path / STORE_NAME}?mode=ro", uri=True, check_same_thread=False
        )
        try:
            last = None
            while True:
                version = (
                    db.execute("PRAGMA data_version").fetchone()[0],
                    state.jobs.version,
                    state.lan.version,
                )
                if last is not None and version != last:
                    yield {"event": "change", "data": "1"}
                last = version
                await asyncio.sleep(POLL)
        finally:
            db.close()

    return EventSourceResponse(stream(), ping=15)


routes = [Route("/events", events)]
