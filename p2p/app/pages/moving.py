"""Moving content: the USB drop box on a chosen folder, importing a bundle
only after showing what verifying it found, exporting a bundle, and the
progress page of those long jobs."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from p2p import community as cm
from p2p.app import words
from p2p.app.view import (
    EXPECTED,
    app_state,
    failed,
    flash,
    gate,
    gettext,
    ngettext,
    redirect,
    render,
)
from p2p.bundle import export as ex
from p2p.bundle import usb
from p2p.bundle.importer import import_bundle, keys_for
from p2p.bundle.source import Keys
from p2p.bundle.verify import verify_bundle
from p2p.errors import BundleError
from p2p.news import News
from p2p.peers import name_of

MAX_UPLOAD = 4 * 1024**3
CHUNK = 1 << 20


def _uploads(state) -> Path:  # noqa: ANN001
    folder = state.home_path / "tmp" / "app-uploads"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


async def page(request: Request) -> Response:
    if (sent := await gate(request)) is not None:
        return sent
    state = app_state(request)

    def load() -> list[dict]:
        return [
            {"id": c.hex, "name": cm.settings(state.home, c).get("name", c.name)}
            for c in cm.all_communities(state.home)
        ]

    jobs = sorted(state.jobs.jobs.values(), key=lambda j: -j.id)[:5]
    return await render(request, "moving.html", cs=await state.call(load), jobs=jobs)


# --- USB drop box -------------------------------------------------------------


def usb_summary(result: usb.SyncResult, ngettext: Any, gettext: Any) -> list[str]:
    total = News()
    rejected = 0
    for r in result.imported:
        total = words.add(total, r.news)
        rejected += len(r.report.rejected)
    lines = [", ".join(words.news(total, ngettext))]
    lines.append(
        ngettext("%(num)d bundle imported", "%(num)d bundles imported", len(result.imported))
        % {"num": len(result.imported)}
    )
    if result.damaged:
        lines.append(words.damaged(len(result.damaged), ngettext))
    if rejected:
        lines.append(words.rejected(rejected, ngettext))
    if result.unreadable:
        lines.append(
            ngettext(
                "%(num)d bundle is for a community you are not in; left as it is",
                "%(num)d bundles are for communities you are not in; left as they are",
                len(result.unreadable),
            )
            % {"num": len(result.unreadable)}
        )
    if result.problem is not None:
        lines.append(
            gettext("Nothing more could be written: {reason}").format(reason=str(result.problem))
        )
    elif result.written:
        docs = sum(b.docs for _p, b in result.written)
        lines.append(
            ngettext(
                "wrote %(num)d bundle for the others (%(docs)d documents)",
                "wrote %(num)d bundles for the others (%(docs)d documents)",
                len(result.written),
            )
            % {"num": len(result.written), "docs": docs}
        )
    else:
        lines.append(gettext("nothing new to write: the others have all you have"))
    return lines


async def usb_sync(request: Request) -> Response:
    state = app_state(request)
    _ = gettext(request)
    data = await request.form()
    folder = Path(str(data.get("folder") or "").strip()).expanduser()
    if not str(folder) or str(folder) == ".":
        flash(request, _("Type the folder on the USB stick, e.g. /media/stick/p2p."), "error")
        return redirect("/move")
    if not folder.is_dir():
        flash(
            request,
            _("{folder} is not a folder: is the stick plugged in?").format(folder=folder),
            "error",
        )
        return redirect("/move")
    ng = ngettext(request)
    label = _("Sync with USB stick: {folder}").format(folder=folder)

    def work(home, progress) -> dict:  # noqa: ANN001
        @contextmanager
        def meter(label: str, total: int | None, _unit: str) -> Iterator[Any]:
            progress(0, total, label)

            def update(done: int, total: int | None = None, count: int | None = None) -> None:
                progress(done, total)

            yield update

        result = usb.sync(home, folder, meter=meter)
        return {
            "summary": usb_summary(result, ng, _),
            "damaged": [f"{f}: {e}" for f, e in result.damaged],
        }

    job = state.jobs.start("usb", label, work)
    return redirect(f"/jobs/{job.id}")


# --- verify, then import ---------------------------------------------------------


async def _save_upload(state, upload: UploadFile) -> Path:  # noqa: ANN001
    dest = _uploads(state) / f"{secrets.token_hex(8)}.p2p"
    size = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while block := await upload.read(CHUNK):
            size += len(block)
            if size > MAX_UPLOAD:
                out.close()
                dest.unlink()
                raise BundleError("this file is too large to be a bundle")
            out.write(block)
    return dest


def _keys(home, phrase: str | None) -> Keys:  # noqa: ANN001
    keys = keys_for(home)
    keys.passphrase = phrase
    return keys


def _verified_view(home, result) -> dict:  # noqa: ANN001
    data = result.as_json()
    data["exporter_name"] = name_of(home, result.exporter)
    data["created_text"] = time.strftime("%Y-%m-%d %H:%M", time.localtime(result.created))
    return data


async def verify(request: Request) -> Response:
    """Check a bundle and show what was found; nothing is applied yet."""
    if (sent := await gate(request)) is not None:
        return sent
    state = app_state(request)
    _ = gettext(request)
    data = await request.form()
    upload, typed = data.get("file"), str(data.get("path") or "").strip()
    phrase = str(data.get("passphrase") or "") or None
    try:
        if isinstance(upload, UploadFile) and upload.filename:
            path = await _save_upload(state, upload)
            temporary = True
        elif typed:
            path, temporary = Path(typed).expanduser(), False
        else:
            flash(request, _("Choose a bundle file, or type where it is."), "error")
            return redirect("/move")
    except EXPECTED as exc:
        failed(request, exc)
        return redirect("/move")
    try:
        result = await state.call(lambda: verify_bundle([path], _keys(state.home, phrase)))
        view = await state.call(_verified_view, state.home, result)
    except EXPECTED as exc:
        if temporary:
            path.unlink(missing_ok=True)
        return await render(
            request,
            "verified.html",
            status=422,
            v=None,
            refused=str(exc),
            ticket=None,
            name=getattr(upload, "filename", None) or typed,
        )
    ticket = None
    if result.ok:
        ticket = secrets.token_urlsafe(12)
        state.pending[ticket] = (path, temporary, phrase)
    elif temporary:
        path.unlink(missing_ok=True)
    return await render(
        request,
        "verified.html",
        status=200 if result.ok else 422,
        v=view,
        refused=None,
        ticket=ticket,
        name=getattr(upload, "filename", None) or typed,
    )


async def apply(request: Request) -> Response:
    state = app_state(request)
    _ = gettext(request)
    data = await request.form()
    held = state.pending.pop(str(data.get("ticket") or ""), None)
    if held is None:
        flash(request, _("That bundle is no longer waiting: check it again."), "error")
        return redirect("/move")
    path, temporary, phrase = held
    ng = ngettext(request)

    def work(home, progress) -> dict:  # noqa: ANN001
        try:
            size = path.stat().st_size  # import reports (bytes read, changes applied)
            r = import_bundle(
                home, [path], keys=_keys(home, phrase), progress=lambda n, _c: progress(n, size)
            )
        finally:
            if temporary:
                path.unlink(missing_ok=True)
        lines = [", ".join(words.news(r.news, ng))]
        if r.already_imported:
            lines.append(_("This bundle was imported before; nothing new in it."))
        if r.report.rejected:
            lines.append(words.rejected(len(r.report.rejected), ng))
        if r.skipped_communities:
            lines.append(_("Some of it belongs to communities you have not joined; left out."))
        return {"summary": lines, "damaged": [x.reason for x in r.report.rejected[:20]]}

    job = state.jobs.start("import", _("Import a bundle"), work)
    return redirect(f"/jobs/{job.id}")


# --- export ---------------------------------------------------------------------


async def export(request: Request) -> Response:
    state = app_state(request)
    data = await request.form()
    wanted = str(data.get("community") or "")

    def build() -> tuple[Path, str] | None:
        home = state.home
        c = cm.resolve(home, wanted)
        domain = ex.domains([c])[0]
        with ex.scratch_dir(home) as tmp:
            built = ex.build(home, domain, Path(tmp))
            if built is None:
                return None
            dest = _uploads(state) / f"export-{secrets.token_hex(6)}.p2p"
            ex.place(built, dest)
        return dest, c.hex[:8]

    try:
        made = await state.call(build)
    except EXPECTED as exc:
        failed(request, exc)
        return redirect("/move")
    if made is None:
        flash(request, gettext(request)("Nothing to export yet."), "error")
        return redirect("/move")
    path, short = made
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=f"p2p-{short}-{time.strftime('%Y%m%d-%H%M')}.p2p",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


# --- progress ----------------------------------------------------------------------


async def job(request: Request) -> Response:
    if (sent := await gate(request)) is not None:
        return sent
    state = app_state(request)
    found = state.jobs.jobs.get(int(request.path_params["jid"]))
    if found is None:
        return redirect("/move")
    return await render(request, "job.html", job=found)


routes = [
    Route("/move", page),
    Route("/move/usb", usb_sync, methods=["POST"]),
    Route("/move/verify", verify, methods=["POST"]),
    Route("/move/import", apply, methods=["POST"]),
    Route("/move/export", export, methods=["POST"]),
    Route("/jobs/{jid:int}", job),
]
