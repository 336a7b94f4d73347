"""The feed: threads with replies, reactions, edits, deletes and moderator
placeholders; compose, reply, react, edit, delete, hide; search."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from p2p import community as cm
from p2p import content
from p2p import feed as feed_view
from p2p.app.pages.attachments import store_uploads
from p2p.app.pages.communities import head
from p2p.app.pages.indexing import first
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
from p2p.index.search import search

PAGE = 50  # threads shown at first, newest first; "show older" adds more
QUICK = ["👍", "❤️", "😂", "🙏", "🎉"]


def _search(home, c: cm.Community, q: str) -> list[dict]:  # noqa: ANN001
    """Posts and chat messages matching `q`, best first (the full-text index,
    as `p2p search` uses it)."""
    return [{**_bare(), **hit, "replies": []} for hit in search(home.docs, c.id, q, limit=50)]


def _bare() -> dict:
    """The fields the feed template expects, for a search hit that lacks them."""
    return {
        "removed": None,
        "deleted": False,
        "edited": None,
        "reactions": {},
        "attachments": [],
        "parent": None,
    }


async def page(request: Request) -> Response:
    if (sent := await gate(request)) is not None:
        return sent
    state = app_state(request)
    c = await community(request)
    if (indexing := await first(request, c)) is not None:
        return indexing
    q = request.query_params.get("q", "").strip()

    try:
        shown = max(PAGE, min(int(request.query_params.get("show", PAGE)), 100_000))
    except ValueError:
        shown = PAGE

    def load() -> tuple[dict, list[dict], int]:
        if q:
            return head(state.home, c), _search(state.home, c, q), 0
        threads, older = feed_view.latest(state.home, c, shown)  # reads only what it shows
        return head(state.home, c), threads[::-1], older

    info, posts, older = await state.call(load)
    me = state.home.public_key.hex()
    return await render(
        request,
        "feed.html",
        c=info,
        posts=posts,
        q=q,
        me_key=me,
        quick=QUICK,
        active="feed",
        older=older,
        more=shown + PAGE,
    )


async def post(request: Request) -> Response:
    state = app_state(request)
    _ = gettext(request)
    c = await community(request)
    raw = await request.form()
    data = {k: v for k, v in raw.items() if isinstance(v, str)}
    reply_to = data.get("reply_to") or None
    back = f"/c/{c.hex}" + (f"#p-{reply_to}" if reply_to else "")
    try:
        files = await store_uploads(request, c, raw.getlist("files"))
        created = await state.call(
            content.post, state.home, c, data.get("text", ""), reply_to, files or None
        )
    except EXPECTED as exc:
        failed(request, exc)
        return redirect(back)
    flash(request, _("Replied.") if reply_to else _("Posted."))
    return redirect(f"/c/{c.hex}#p-{created['id']}")


async def react(request: Request) -> Response:
    state = app_state(request)
    c = await community(request)
    data = await form(request)
    pid = data.get("post", "")
    return await act(
        request,
        f"/c/{c.hex}#p-{pid}",
        None,
        content.react,
        state.home,
        c,
        pid,
        data.get("emoji", ""),
        data.get("remove") == "1",
    )


async def edit(request: Request) -> Response:
    state = app_state(request)
    _ = gettext(request)
    c = await community(request)
    data = await form(request)
    pid = data.get("post", "")
    return await act(
        request,
        f"/c/{c.hex}#p-{pid}",
        _("Edited."),
        content.edit,
        state.home,
        c,
        pid,
        data.get("text", ""),
    )


async def delete(request: Request) -> Response:
    state = app_state(request)
    _ = gettext(request)
    c = await community(request)
    data = await form(request)
    pid = data.get("post", "")
    if data.get("sure") != "on":
        flash(request, _("Tick the box to confirm the delete."), "error")
        return redirect(f"/c/{c.hex}#p-{pid}")
    return await act(
        request, f"/c/{c.hex}#p-{pid}", _("Deleted."), content.delete, state.home, c, pid
    )


routes = [
    Route("/c/{cid}", page),
    Route("/c/{cid}/post", post, methods=["POST"]),
    Route("/c/{cid}/react", react, methods=["POST"]),
    Route("/c/{cid}/edit", edit, methods=["POST"]),
    Route("/c/{cid}/delete", delete, methods=["POST"]),
]
