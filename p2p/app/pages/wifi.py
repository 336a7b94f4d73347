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

    sessions = []
    for s in state.lan.sessions:
        line = s.error
        if s.ok and s.result is not None:
            parts = words.news(s.result.news, ng)
            if s.result.report.rejected:
                parts.append(words.rejected(len(s.result.report.rejected), ng))
            line = ", ".join(parts)
        sessions.append(
            {
                "when": dt.datetime.fromtimestamp(s.at).strftime("%H:%M:%S"),
                "peer": fingerprint(s.result.peer) if s.result else s.peer,
                "ok": s.ok,
                "line": line or _("nothing new"),
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
        if data.get("peer", "").strip():
            targets = [_hostport(data["peer"])]
        else:
            found = await anyio.to_thread.run_sync(state.lan.browse)
            targets = [_hostport(p) for p in found]
            if not targets:
                flash(
                    request,
                    _("No one found on this network. Are the others' apps on Wi-Fi sync?"),
                    "error",
                )
        for host, port in targets:
            s = await anyio.to_thread.run_sync(state.lan.sync, host, port)
            if not s.ok:
                flash(
                    request,
                    _("Sync with {peer} failed: {reason}").format(peer=s.peer, reason=s.error),
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
