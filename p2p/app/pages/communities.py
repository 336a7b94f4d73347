"""Communities: the list, create, join from an invite (upload or a path on a
stick), write an invite as a download, and leave."""

from __future__ import annotations

from pathlib import Path

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from p2p import community as cm
from p2p import invites
from p2p.app.view import (
    EXPECTED,
    act,
    app_state,
    community,
    failed,
    flash,
    form,
    gate,
    gettext,
    redirect,
    render,
)
from p2p.errors import InvalidInvite
from p2p.identity import fingerprint


def _rows(home) -> list[dict]:  # noqa: ANN001
    out = []
    for c in cm.all_communities(home):
        s = cm.settings(home, c)
        out.append(
            {
                "id": c.hex,
                "name": s.get("name", c.name),
                "description": s.get("description", ""),
                "private": c.private,
                "role": cm.role(home, c, home.public_key),
                "members": len(cm.members(home, c)),
                "owner": fingerprint(c.owner),
            }
        )
    return out


async def listing(request: Request) -> Response:
    if (sent := await gate(request)) is not None:
        return sent
    state = app_state(request)
    return await render(request, "communities.html", rows=await state.call(_rows, state.home))


async def create(request: Request) -> Response:
    state = app_state(request)
    _ = gettext(request)
    data = await form(request)
    name = data.get("name", "").strip()
    if not name:
        flash(request, _("Give the community a name."), "error")
        return redirect("/communities")
    try:
        c = await state.call(
            cm.create, state.home, name, data.get("private") == "on", data.get("description", "")
        )
    except EXPECTED as exc:
        failed(request, exc)
        return redirect("/communities")
    flash(request, _("Created {name}. Invite people from its Invite tab.").format(name=name))
    return redirect(f"/c/{c.hex}")


async def join(request: Request) -> Response:
    state = app_state(request)
    _ = gettext(request)
    data = await request.form()
    upload, path = data.get("file"), str(data.get("path") or "").strip()
    phrase = str(data.get("passphrase") or "") or None
    try:
        if isinstance(upload, UploadFile) and upload.filename:
            blob = await upload.read(invites.MAX_INVITE + 1)
        elif path:
            with Path(path).expanduser().open("rb") as fh:
                blob = fh.read(invites.MAX_INVITE + 1)
        else:
            raise InvalidInvite(_("choose an invite file, or type where it is"))
        if invites.is_sealed(blob) and phrase is None:
            raise InvalidInvite(_("this invite is sealed: type the passphrase its sender told you"))
        c = await state.call(invites.join, state.home, blob, phrase)
    except EXPECTED as exc:
        failed(request, exc)
        return redirect("/communities")
    name = await state.call(lambda: cm.settings(state.home, c).get("name", c.name))
    flash(
        request,
        _("You joined {name}. Sync by USB or Wi-Fi to see what others wrote.").format(name=name),
    )
    return redirect(f"/c/{c.hex}")


async def invite(request: Request) -> Response:
    if (sent := await gate(request)) is not None:
        return sent
    state = app_state(request)
    c = await community(request)
    if request.method == "GET":
        info = await state.call(_head, state.home, c)
        return await render(request, "invite.html", c=info, active="invite")
    _ = gettext(request)
    data = await form(request)
    phrase = data.get("passphrase", "") or None
    if c.private and not phrase and data.get("unsealed") != "on":
        flash(
            request,
            _(
                "A private community's invite needs a passphrase "
                "(or tick the box to write it unsealed)."
            ),
            "error",
        )
        return redirect(f"/c/{c.hex}/invite")
    try:
        blob = await state.call(invites.write, state.home, c, phrase)
    except EXPECTED as exc:
        failed(request, exc)
        return redirect(f"/c/{c.hex}/invite")
    return Response(
        blob,
        media_type="application/octet-stream",
        headers={"content-disposition": f'attachment; filename="invite-{c.hex[:8]}.p2p"'},
    )


async def leave(request: Request) -> Response:
    state = app_state(request)
    _ = gettext(request)
    c = await community(request)
    data = await form(request)
    if data.get("sure") != "on":
        flash(request, _("Tick the box to confirm that you want to leave."), "error")
        return redirect(f"/c/{c.hex}/manage")
    return await act(
        request,
        "/communities",
        _("You left the community; its data was removed from this device."),
        cm.leave,
        state.home,
        c,
    )


def _head(home, c: cm.Community) -> dict:  # noqa: ANN001
    """What every community page shows at the top."""
    s = cm.settings(home, c)
    my_role = cm.role(home, c, home.public_key)
    return {
        "id": c.hex,
        "name": s.get("name", c.name),
        "description": s.get("description", ""),
        "rules": s.get("rules", ""),
        "private": c.private,
        "role": my_role,
        "is_mod": my_role in ("owner", "moderator"),
    }


head = _head

routes = [
    Route("/communities", listing),
    Route("/communities/create", create, methods=["POST"]),
    Route("/communities/join", join, methods=["POST"]),
    Route("/c/{cid}/invite", invite, methods=["GET", "POST"]),
    Route("/c/{cid}/leave", leave, methods=["POST"]),
]
