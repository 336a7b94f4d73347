"""Members and moderation: roles, settings and rules, hide and unhide,
ban and unban (owner and moderators), and leaving the community."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from p2p import chat, content
from p2p import community as cm
from p2p.app.pages.communities import head
from p2p.app.view import act, app_state, community, form, gate, gettext, person, render
from p2p.errors import UnknownPost


async def page(request: Request) -> Response:
    if (sent := await gate(request)) is not None:
        return sent
    state = app_state(request)
    c = await community(request)

    def load() -> dict:
        home = state.home
        st = cm.state(home, c)
        people = []
        for k in cm.members(home, c):
            p: dict[str, object] = {**person(home, c, k)}
            p["role"] = cm.role(home, c, k)
            p["bio"] = str(cm.profile(home, c, k).get("bio") or "")
            p["me"] = k == home.public_key
            people.append(p)
        return {"c": head(home, c), "people": people, "hidden": sorted(st["hidden"])}

    ctx = await state.call(load)
    return await render(request, "manage.html", active="manage", **ctx)


def _target(home, c: cm.Community, wanted: str) -> str:  # noqa: ANN001
    """A post or a chat message id, as `p2p mod hide` accepts it."""
    try:
        return str(content.find_post(home, c, wanted)["id"])
    except UnknownPost:
        message = chat.find_message(home, c, wanted)
        if message is None:
            raise
        return str(message["id"])


def _hide(home, c: cm.Community, wanted: str, hidden: bool) -> None:  # noqa: ANN001
    if hidden:
        cm.hide(home, c, _target(home, c, wanted))
    else:
        cm.unhide(home, c, wanted.strip().lower())


async def hide(request: Request) -> Response:
    state = app_state(request)
    _ = gettext(request)
    c = await community(request)
    data = await form(request)
    return await act(
        request,
        f"/c/{c.hex}",
        _("Hidden from everyone's view. Moderators can show it again."),
        _hide,
        state.home,
        c,
        data.get("post", ""),
        True,
    )


async def unhide(request: Request) -> Response:
    state = app_state(request)
    _ = gettext(request)
    c = await community(request)
    data = await form(request)
    return await act(
        request,
        f"/c/{c.hex}/manage",
        _("Shown again."),
        _hide,
        state.home,
        c,
        data.get("post", ""),
        False,
    )


async def settings(request: Request) -> Response:
    state = app_state(request)
    _ = gettext(request)
    c = await community(request)
    data = await form(request)
    return await act(
        request,
        f"/c/{c.hex}/manage",
        _("Settings saved."),
        lambda: cm.update_settings(
            state.home,
            c,
            name=data.get("name", "").strip() or None,
            description=data.get("description"),
            rules=data.get("rules"),
        ),
    )


async def role(request: Request) -> Response:
    state = app_state(request)
    _ = gettext(request)
    c = await community(request)
    data = await form(request)
    key = bytes.fromhex(data.get("member", "") or "00")
    return await act(
        request,
        f"/c/{c.hex}/manage",
        _("Role changed."),
        cm.set_role,
        state.home,
        c,
        key,
        data.get("role", ""),
    )


async def ban(request: Request) -> Response:
    state = app_state(request)
    _ = gettext(request)
    c = await community(request)
    data = await form(request)
    key = bytes.fromhex(data.get("member", "") or "00")
    banned = data.get("banned") == "1"
    return await act(
        request,
        f"/c/{c.hex}/manage",
        _("Banned: their posts and messages disappear from views.") if banned else _("Ban lifted."),
        cm.ban if banned else cm.unban,
        state.home,
        c,
        key,
    )


routes = [
    Route("/c/{cid}/manage", page),
    Route("/c/{cid}/hide", hide, methods=["POST"]),
    Route("/c/{cid}/unhide", unhide, methods=["POST"]),
    Route("/c/{cid}/settings", settings, methods=["POST"]),
    Route("/c/{cid}/role", role, methods=["POST"]),
    Route("/c/{cid}/ban", ban, methods=["POST"]),
]
