"""First run and 'me': create the identity, unlock it, name and bio,
fingerprint (large, with a QR code), and the language switch."""

from __future__ import annotations

import io

import anyio.to_thread
import segno
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from p2p import community as cm
from p2p.app import i18n
from p2p.app.view import EXPECTED, app_state, failed, flash, form, gate, gettext, redirect, render

MIN_PASSPHRASE = 8


async def root(request: Request) -> Response:
    return await gate(request) or redirect("/communities")


async def setup(request: Request) -> Response:
    state = app_state(request)
    if await state.call(state.home.has_identity):
        return redirect("/")
    if request.method == "GET":
        return await render(request, "setup.html")
    _ = gettext(request)
    data = await form(request)
    phrase, again = data.get("passphrase", ""), data.get("again", "")
    name = data.get("name", "").strip()
    if len(phrase) < MIN_PASSPHRASE:
        flash(request, _("Choose a passphrase of at least 8 characters."), "error")
    elif phrase != again:
        flash(request, _("The two passphrases are not the same."), "error")
    else:
        try:
            await state.call(state.create_identity, phrase)
            if name:
                await state.call(cm.set_profile, state.home, name, None)
        except EXPECTED as exc:
            failed(request, exc)
        else:
            flash(request, _("Your identity is ready. Keep your passphrase safe."))
            return redirect("/me")
    return await render(request, "setup.html", status=400, name=name)


async def unlock(request: Request) -> Response:
    state = app_state(request)
    if request.method == "GET":
        if await state.call(state.unlocked):
            return redirect("/")
        return await render(request, "unlock.html")
    _ = gettext(request)
    data = await form(request)
    try:
        await state.call(state.unlock, data.get("passphrase", ""))
    except EXPECTED:
        flash(request, _("Wrong passphrase: your keys stay locked. Try again."), "error")
        return await render(request, "unlock.html", status=400)
    return redirect("/communities")


def _me(state) -> dict:  # noqa: ANN001
    home = state.home
    profile = home.meta("profile") or {}
    pub = home.public_identity()
    return {
        "name": profile.get("name", ""),
        "bio": profile.get("bio", ""),
        "fingerprint": pub.fingerprint,
        "public_key": pub.public_key.hex(),
        "protected": home.is_protected(),
        "home": str(home.path),
    }


async def me(request: Request) -> Response:
    if (sent := await gate(request)) is not None:
        return sent
    state = app_state(request)
    if request.method == "POST":
        _ = gettext(request)
        data = await form(request)
        try:
            await state.call(
                cm.set_profile, state.home, data.get("name", "").strip(), data.get("bio", "")
            )
        except EXPECTED as exc:
            failed(request, exc)
        else:
            flash(request, _("Saved. Others see it after your next sync."))
        return redirect("/me")
    return await render(request, "me.html", info=await state.call(_me, state))


async def lock(request: Request) -> Response:
    state = app_state(request)
    _ = gettext(request)
    if await state.call(state.home.is_protected):
        await anyio.to_thread.run_sync(state.lock_now)
        flash(request, _("Locked. Your passphrase is needed to open your keys again."))
    return redirect("/unlock")


async def qr(request: Request) -> Response:
    """The fingerprint and key as a QR code, for comparing phone to screen."""
    if (sent := await gate(request)) is not None:
        return sent
    state = app_state(request)
    pub = await state.call(state.home.public_identity)
    out = io.BytesIO()
    segno.make(f"p2p:{pub.public_key.hex()}", error="m").save(
        out, kind="svg", scale=6, border=2, dark="#1b1f23", light="#ffffff"
    )
    return Response(out.getvalue(), media_type="image/svg+xml")


async def language(request: Request) -> Response:
    data = await form(request)
    back = data.get("back", "/")
    if not back.startswith("/") or back.startswith("//"):
        back = "/"
    response = redirect(back)
    chosen = data.get("lang", i18n.DEFAULT)
    if chosen in i18n.LANGUAGES:
        response.set_cookie("lang", chosen, max_age=365 * 86400, samesite="strict", httponly=True)
    return response


routes = [
    Route("/", root),
    Route("/setup", setup, methods=["GET", "POST"]),
    Route("/unlock", unlock, methods=["GET", "POST"]),
    Route("/me", me, methods=["GET", "POST"]),
    Route("/me/qr.svg", qr),
    Route("/lock", lock, methods=["POST"]),
    Route("/lang", language, methods=["POST"]),
]
