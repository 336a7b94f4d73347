"""Chat rooms: the rooms, the latest messages of one (arriving live), send."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from p2p import chat
from p2p.app.pages.attachments import store_uploads
from p2p.app.pages.communities import head
from p2p.app.pages.indexing import first
from p2p.app.view import EXPECTED, app_state, community, failed, gate, redirect, render

SHOWN = 200


async def page(request: Request) -> Response:
    if (sent := await gate(request)) is not None:
        return sent
    state = app_state(request)
    c = await community(request)
    if (indexing := await first(request, c)) is not None:
        return indexing
    room = request.query_params.get("room", chat.DEFAULT_ROOM)

    def load() -> tuple[dict, list[dict], list[dict], str]:
        checked = chat.check_room(room)
        return (
            head(state.home, c),
            chat.rooms(state.home, c),
            chat.messages(state.home, c, checked, last=SHOWN),  # reads only what it shows
            checked,
        )

    try:
        info, rooms, messages, room = await state.call(load)
    except EXPECTED as exc:
        failed(request, exc)
        return redirect(f"/c/{c.hex}/chat")
    if room not in [r["room"] for r in rooms]:
        rooms.append({"room": room, "messages": 0, "last": 0})
    me = state.home.public_key.hex()
    return await render(
        request,
        "chat.html",
        c=info,
        rooms=rooms,
        room=room,
        messages=messages,
        me_key=me,
        active="chat",
    )


async def send(request: Request) -> Response:
    state = app_state(request)
    c = await community(request)
    raw = await request.form()
    data = {k: v for k, v in raw.items() if isinstance(v, str)}
    room = data.get("room", chat.DEFAULT_ROOM).strip() or chat.DEFAULT_ROOM
    try:
        files = await store_uploads(request, c, raw.getlist("files"))
        await state.call(
            chat.send, state.home, c, data.get("text", ""), room, attachments=files or None
        )
    except EXPECTED as exc:
        failed(request, exc)
    return redirect(f"/c/{c.hex}/chat?{urlencode({'room': room})}#compose")


routes = [
    Route("/c/{cid}/chat", page),
    Route("/c/{cid}/chat", send, methods=["POST"]),
]
