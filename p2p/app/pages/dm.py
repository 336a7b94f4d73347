"""Direct messages: conversations, one conversation, and sending to a member."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from p2p import community as cm
from p2p import dm
from p2p.app.pages.communities import head
from p2p.app.pages.indexing import first
from p2p.app.view import (
    EXPECTED,
    app_state,
    community,
    failed,
    flash,
    form,
    gate,
    gettext,
    person,
    redirect,
    render,
)


async def page(request: Request) -> Response:
    if (sent := await gate(request)) is not None:
        return sent
    state = app_state(request)
    c = await community(request)
    if (indexing := await first(request, c)) is not None:
        return indexing
    with_hex = request.query_params.get("with", "")

    def load() -> dict:
        home = state.home
        me = home.public_key
        everyone = [person(home, c, k) for k in cm.members(home, c) if k != me]
        chats: dict[str, dict] = {}
        for m in dm.messages(home, c):
            row = chats.setdefault(
                m["with"],
                {
                    "key": m["with"],
                    "name": m["with_name"],
                    "fingerprint": m["with_fingerprint"],
                    "count": 0,
                    "last": 0,
                },
            )
            row["count"] += 1
            row["last"] = max(row["last"], m["ts"])
        shown: list[dict] = []
        other = None
        if with_hex:
            key = bytes.fromhex(with_hex)
            other = person(home, c, key)
            shown = dm.messages(home, c, key)
        return {
            "c": head(home, c),
            "members": everyone,
            "conversations": sorted(chats.values(), key=lambda r: -r["last"]),
            "other": other,
            "messages": shown,
        }

    try:
        ctx = await state.call(load)
    except ValueError:
        return redirect(f"/c/{c.hex}/dm")
    return await render(request, "dm.html", active="dm", **ctx)


async def send(request: Request) -> Response:
    state = app_state(request)
    _ = gettext(request)
    c = await community(request)
    data = await form(request)
    to = data.get("to", "")
    try:
        key = await state.call(cm.resolve_member, state.home, c, to)
        await state.call(dm.send, state.home, c, key, data.get("text", ""))
    except EXPECTED as exc:
        failed(request, exc)
        return redirect(f"/c/{c.hex}/dm")
    flash(request, _("Sealed for them; it travels with the community."))
    return redirect(f"/c/{c.hex}/dm?with={key.hex()}")


routes = [
    Route("/c/{cid}/dm", page),
    Route("/c/{cid}/dm", send, methods=["POST"]),
]
