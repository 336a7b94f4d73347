"""Images: metadata removed by re-encoding, and small thumbnails (Pillow).

A photo's EXIF block can carry the GPS position where it was taken, the camera's
serial number and the time; for the people p2p serves that can be deadly, so a
recognised image is re-encoded from its pixels by default (orientation applied
first, so nothing looks rotated), which drops every metadata block. Anything
Pillow does not recognise is kept byte for byte.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Pillow is imported on first use: it costs `p2p post` and `feed` ~0.1 s
    from PIL import Image

THUMB_MAX = 16 * 1024
THUMB_SIDE = 160
REENCODE = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WEBP", "GIF": "PNG", "TIFF": "PNG", "BMP": "PNG"}
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
MAX_PIXELS = 80_000_000  # a decompression bomb is refused, not decoded


def _pil() -> tuple[ModuleType, ModuleType]:
    """PIL.Image (with the bomb limit set) and PIL.ImageOps."""
    from PIL import Image, ImageOps

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    return Image, ImageOps


@dataclass
class Prepared:
    path: Path  # the bytes to store (the original, or a re-encoded copy)
    name: str
    mime: str
    thumb: bytes | None
    stripped: bool


def guess_mime(name: str) -> str:
    import mimetypes  # here: it reads the system's type tables on first use

    return mimetypes.guess_type(name)[0] or "application/octet-stream"


MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"II*\x00", b"MM\x00*", b"BM")


def looks_like_image(head: bytes) -> bool:
    """Only these are handed to Pillow (which otherwise tries every format it knows)."""
    return head.startswith(MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _open(path: Path) -> Image.Image | None:
    with path.open("rb") as fh:
        if not looks_like_image(fh.read(16)):
            return None
    pil, _ = _pil()
    try:
        img = pil.open(path)
        img.load()
        return img
    except (pil.UnidentifiedImageError, OSError, ValueError, pil.DecompressionBombError):
        return None


def thumbnail(img: Image.Image) -> bytes | None:
    """A WebP of at most THUMB_MAX bytes, or None if the image will not shrink to it."""
    _, image_ops = _pil()
    small = image_ops.exif_transpose(img.copy())
    small = small.convert("RGBA" if "A" in small.getbands() else "RGB")
    small.thumbnail((THUMB_SIDE, THUMB_SIDE))
    for quality in (60, 40, 20):
        buf = io.BytesIO()
        small.save(buf, "WEBP", quality=quality)
        if buf.tell() <= THUMB_MAX:
            return buf.getvalue()
    return None


def prepare(path: Path, scratch: Path, keep_metadata: bool = False) -> Prepared:
    """What to store for `path`: images re-encoded without metadata (unless asked
    to keep it), with a thumbnail; anything else as it is."""
    name = path.name
    img = _open(path)
    if img is None:
        return Prepared(path, name, guess_mime(name), None, False)
    fmt = img.format or ""
    thumb = thumbnail(img)
    if keep_metadata or fmt not in REENCODE:
        return Prepared(path, name, MIME.get(fmt, guess_mime(name)), thumb, False)
    out_fmt = REENCODE[fmt]
    clean = _pil()[1].exif_transpose(img)
    if out_fmt == "JPEG" and clean.mode not in ("RGB", "L"):
        clean = clean.convert("RGB")
    dest = scratch / f"clean-{path.stem}"
    options: dict = {"quality": 92} if out_fmt in ("JPEG", "WEBP") else {}
    clean.save(dest, out_fmt, **options)  # no exif=, no icc/xmp: metadata is gone
    if out_fmt != fmt:
        name = f"{path.stem}.{out_fmt.lower()}"
    return Prepared(dest, name, MIME[out_fmt], thumb, True)
