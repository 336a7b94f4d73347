"""'Sync on this Wi-Fi': start and stop the LAN node, sync with a peer by
address or with everyone mDNS finds, and list peers seen and last sessions."""

from __future__ import annotations

import datetime as dt

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from p2p.app import words
from p2p.app.view import (
    EXPECTED,
    app_state,
    failed,
    flash,
    form,
    gate,
    gettext,
    ngettext,
    redirect,
    render,
)
from p2p.identity import fingerprint
from p2p.news import News
from p2p.peers import known, name_of


def _hostport(text: str) -> tuple[str, int]:
    host, _sep, port = text.strip().rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{text!r} is not an address like 192.168.1.20:7420")
    return host, int(port)


async def page(request: Request) -> Response:
    if (sent := await gate(request)) is not None:
        return sent
    state = app_state(request)
    ng = ngettext(request)
    _ = gettext(request)

    def names() -> dict[str, str]:
        keys = {e["public_key"] for e in state.lan.sessions if e.get("public_key")}
        return {k: name_of(state.home, bytes.fromhex(k)) for k in keys}

    def load() -> list[dict]:
        home = state.home
        return [
            {
                "name": name_of(home, k),
                "fingerprint": fingerprint(k),
                "when": dt.datetime.fromtimestamp(seen).strftime("%Y-%m-%d %H:%M"),
                "via": via,
            }
            for k, seen, via in sorted(known(home), key=lambda r: -r[1])
        ]

    named = await state.call(names)
    sessions = []
    for e in state.lan.sessions:
        if e["ok"]:
            news = News(
                int(e.get("new_posts", 0)),
                int(e.get("new_chat_messages", 0)),
                int(e.get("new_direct_messages", 0)),
                int(e.get("new_members", 0)),
            )
            parts = words.news(news, ng)
            if e.get("rejected"):
                parts.append(words.rejected(len(e["rejected"]), ng))
            line = ", ".join(parts)
        elif e.get("event") == "stranger":
            line = _("shares no community with you")
        else:
            line = _("failed: {reason}").format(reason=e.get("error") or e.get("message", ""))
        sessions.append(
            {
                "when": dt.datetime.fromtimestamp(e["at"]).strftime("%H:%M:%S"),
                "peer": e.get("fingerprint") or e.get("peer_address") or "?",
                "name": named.get(e.get("public_key", ""), ""),
                "ok": e["ok"],
                "line": line,
            }
        )
    return await render(
        request,
        "wifi.html",
        lan=state.lan,
        peers=await state.call(load),
        sessions=sessions,
        seen=sorted(state.lan.seen),
    )


async def start(request: Request) -> Response:
    if (sent := await gate(request)) is not None:
        return sent  # the node signs with the unlocked keys
    state = app_state(request)
    try:
        await anyio.to_thread.run_sync(state.lan.start)
    except EXPECTED as exc:
        failed(request, exc)
    return redirect("/wifi")


async def stop(request: Request) -> Response:
    state = app_state(request)
    await anyio.to_thread.run_sync(state.lan.stop)
    return redirect("/wifi")


async def sync(request: Request) -> Response:
    state = app_state(request)
    _ = gettext(request)
    data = await form(request)
    try:
        host, port = _hostport(data.get("peer", ""))
        e = await anyio.to_thread.run_sync(state.lan.sync, host, port)
        if e["event"] != "session":
            flash(
                request,
                _("Sync with {peer} failed: {reason}").format(
                    peer=e["peer_address"], reason=e.get("error", "")
                ),
                "error",
            )
    except EXPECTED as exc:
        failed(request, exc)
    return redirect("/wifi")


routes = [
    Route("/wifi", page),
    Route("/wifi/start", start, methods=["POST"]),
    Route("/wifi/stop", stop, methods=["POST"]),
    Route("/wifi/sync", sync, methods=["POST"]),
]
