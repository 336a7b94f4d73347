"""The first view of a community whose indexes must be built (a store an older p2p
wrote, with another index layout) reads every document once: 16 s at 300,000
posts. The app runs that as a job with progress, like an import, instead of a
page that seems to hang; after it, the community opens at once."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from p2p import community as cm
from p2p import index
from p2p.app.jobs import Progress
from p2p.app.view import app_state, gettext, ngettext, redirect
from p2p.home import Home

BACKGROUND = 8 * 1024 * 1024  # saved bytes to read (~20k posts) above which it is a job


async def first(request: Request, c: cm.Community) -> Response | None:
    """A redirect to the progress of this community's indexing when a long one is to
    do (started here) or running; None: the page can be shown now."""
    state = app_state(request)
    kind = f"index:{c.hex}"
    running = next(
        (j for j in state.jobs.jobs.values() if j.kind == kind and j.status == "running"), None
    )
    if running is None:
        if await state.call(index.to_read, state.home.docs, c.id) < BACKGROUND:
            return None
        _, ng = gettext(request), ngettext(request)

        def work(home: Home, progress: Progress) -> dict:
            n = index.refresh(home.docs, c.id, lambda done, total, _n: progress(done, total))
            read = ng("%(num)d document read", "%(num)d documents read", n) % {"num": n}
            return {"summary": [read, _("From now on it opens at once.")], "damaged": []}

        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        label = _("Preparing {name} for reading (once)").format(name=c.name)
        running = state.jobs.start(kind, label, work, back=back)
    return redirect(f"/jobs/{running.id}")
