"""What every page shares: rendering with the reader's language, flashes,
running a library call and turning its error into one plain line."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import markupsafe
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from p2p import community as cm
from p2p.app import i18n
from p2p.blobs.sizes import human
from p2p.errors import P2PError
from p2p.identity import fingerprint

if TYPE_CHECKING:
    from p2p.app.state import AppState

PAGES = Path(__file__).parent / "pages"
CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _finalize(value: Any) -> Any:
    """Every value a template shows: control characters (terminal escapes and
    the like, which a member can sign into any text) are dropped; line breaks
    and tabs stay. Escaping for HTML follows (autoescape)."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return CONTROLS.sub("", value)
    return value  # Markup (a macro's output) was cleaned value by value inside


env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(PAGES),
    autoescape=True,  # member text is always text
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    finalize=_finalize,
)

EXPECTED = (P2PError, ValueError, OSError)  # errors a user can act on


def when(ms: object) -> str:
    """A stored timestamp (Unix ms, as any member signed it) as local time, or '?'."""
    try:
        return dt.datetime.fromtimestamp(int(ms) / 1000).strftime("%Y-%m-%d %H:%M")  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


env.filters["when"] = when
env.filters["filesize"] = lambda n: human(int(n))
env.filters["fp"] = fingerprint


def app_state(request: Request) -> AppState:
    return request.app.state.p2p  # type: ignore[no-any-return]


def lang(request: Request) -> str:
    return i18n.choose(request.cookies.get("lang"), request.headers.get("accept-language", ""))


def gettext(request: Request) -> Callable[[str], str]:
    return i18n.translations(lang(request)).gettext


def ngettext(request: Request) -> Callable[[str, str, int], str]:
    return i18n.translations(lang(request)).ngettext


def flash(request: Request, text: str, kind: str = "ok") -> None:
    app_state(request).flashes.append((kind, text))


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def failed(request: Request, exc: BaseException) -> None:
    _ = gettext(request)
    flash(request, _("That did not work: {reason}").format(reason=str(exc)), "error")


def _nav(state: AppState) -> dict[str, Any]:
    home = state.home
    out: dict[str, Any] = {"me": None, "communities": []}
    if home.has_identity() and state.identity is not None:
        profile = home.meta("profile") or {}
        assert isinstance(profile, dict)
        out["me"] = {"name": profile.get("name", ""), "fingerprint": state.identity.fingerprint}
        out["communities"] = [
            {"id": c.hex, "name": cm.settings(home, c).get("name", c.name)}
            for c in cm.all_communities(home)
        ]
    return out


async def render(request: Request, template: str, status: int = 200, **ctx: Any) -> Response:
    state = app_state(request)
    nav = await state.call(_nav, state)
    if request.headers.get("x-live"):
        flashes = []  # a live refresh of a page in the background leaves them for the next page
    else:
        flashes, state.flashes = state.flashes, []
    html = env.get_template(template).render(
        _=gettext(request),
        ngettext=ngettext(request),
        lang=lang(request),
        languages=i18n.LANGUAGES,
        path=request.url.path,
        full_path=str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
        flashes=flashes,
        **nav,
        **ctx,
    )
    return HTMLResponse(html, status_code=status)


async def act(
    request: Request, back: str, done: str | None, fn: Callable[..., Any], *args: Any
) -> RedirectResponse:
    """Run one library call; flash `done` or the error's plain line; go `back`."""
    state = app_state(request)
    try:
        await state.call(fn, *args)
    except EXPECTED as exc:
        failed(request, exc)
    else:
        if done:
            flash(request, done)
    return redirect(back)


async def form(request: Request) -> dict[str, str]:
    data = await request.form()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def person(home: Any, c: cm.Community, key: bytes) -> dict[str, str]:
    """A member as pages show them: name AND fingerprint, never the name alone."""
    return {
        "key": key.hex(),
        "name": cm.display_name(home, c, key),
        "fingerprint": fingerprint(key),
    }


async def gate(request: Request) -> Response | None:
    """Send the reader to set-up or unlock first when there is no usable identity."""
    state = app_state(request)
    has = await state.call(state.home.has_identity)
    if not has:
        return redirect("/setup")
    if not await state.call(state.unlocked):
        return redirect("/unlock")
    return None


async def community(request: Request) -> cm.Community:
    state = app_state(request)
    return await state.call(cm.resolve, state.home, request.path_params["cid"])
