"""Attachments: thumbnails shown inline, files served whole and verified.

Anything a member attached is served with `nosniff` and a sandboxing CSP;
only plain image types open in the browser, everything else (HTML, SVG,
scripts, unknown types) is a download with a neutral type."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from p2p import community as cm
from p2p.app.view import EXPECTED, app_state, community, gate
from p2p.blobs import attach

INLINE = {"image/png", "image/jpeg", "image/gif", "image/webp"}  # never SVG
MEMBER_FILE_HEADERS = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; sandbox",
}
MAX_FILES = 8


def _safe_name(name: str) -> str:
    base = Path(name.replace("\\", "/")).name
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip(". ") or "file"
    return base[:120]


async def store_uploads(request: Request, c: cm.Community, uploads: list) -> list[dict]:
    """Store the files of a compose form; entries for content.post/chat.send."""
    files = [u for u in uploads if isinstance(u, UploadFile) and u.filename][:MAX_FILES]
    if not files:
        return []
    state = app_state(request)
    scratch = state.home_path / "tmp"
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        paths = []
        for i, u in enumerate(files):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            dest = folder / _safe_name(u.filename or "file")
            with dest.open("wb") as out:
                while block := await u.read(1 << 20):
                    out.write(block)
            paths.append(dest)

        def add() -> list[dict]:
            lim = attach.limits(cm.settings(state.home, c))
            made = attach.add_files(state.home, paths, private=c.private, lim=lim)
            return [e.as_doc() for e in made]

        return await state.call(add)


async def thumb(request: Request) -> Response:
    if (sent := await gate(request)) is not None:
        return sent
    state = app_state(request)
    c = await community(request)
    try:
        ref = await state.call(attach.find, state.home, request.path_params["aid"], [c.id])
    except EXPECTED:
        return Response(status_code=404, headers=MEMBER_FILE_HEADERS)
    if ref.entry.thumb is None:
        return Response(status_code=404, headers=MEMBER_FILE_HEADERS)
    return Response(ref.entry.thumb, media_type="image/webp", headers=MEMBER_FILE_HEADERS)


async def download(request: Request) -> Response:
    if (sent := await gate(request)) is not None:
        return sent
    state = app_state(request)
    c = await community(request)
    wanted = request.path_params["aid"]
    scratch = state.home_path / "tmp"
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=scratch))

    def out() -> tuple[Path, dict]:
        ref = attach.find(state.home, wanted, [c.id])
        info = attach.save(state.home, ref.entry.id.hex(), folder / "file")
        return Path(info["file"]), info

    def clean() -> None:
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()

    try:
        path, info = await state.call(out)
    except EXPECTED as exc:
        clean()
        return Response(
            f"This attachment cannot be opened: {exc}",
            status_code=404,
            media_type="text/plain; charset=utf-8",
            headers=MEMBER_FILE_HEADERS,
        )
    mime = str(info.get("mime") or "")
    inline = mime in INLINE
    return FileResponse(
        path,
        media_type=mime if inline else "application/octet-stream",
        filename=_safe_name(str(info.get("name") or "file")),
        content_disposition_type="inline" if inline else "attachment",
        headers=MEMBER_FILE_HEADERS,
        background=BackgroundTask(clean),
    )


routes = [
    Route("/c/{cid}/att/{aid}/thumb", thumb),
    Route("/c/{cid}/att/{aid}", download),
]
