"""Attaching files to posts, describing them, saving them out, community limits.

The faces (CLI, web app) call these; the post itself is written by
`p2p.content.post` / `p2p.chat.send` with the entries returned by `add_files`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from p2p import atomic
from p2p.blobs import entries, media, seal
from p2p.blobs.entries import Entry, Ref
from p2p.blobs.sizes import human
from p2p.blobs.store import BlobStore
from p2p.direct import DirectWriter
from p2p.errors import AttachmentRefused, BadAttachment, UnknownAttachment
from p2p.home import Home

LIMIT_LARGEST = "max_attachment"  # community settings keys (decimal bytes as text)
LIMIT_MEMBER = "max_member_total"


@dataclass(frozen=True)
class Limits:
    largest: int | None = None
    member_total: int | None = None


def limits(settings: dict) -> Limits:
    """A community's attachment limits, from its (member-signed, so untrusted) settings."""

    def read(key: str) -> int | None:
        value = settings.get(key)
        try:
            n = int(str(value)) if value not in (None, "") else None
        except ValueError:
            return None
        return n if n is not None and n >= 0 else None

    return Limits(read(LIMIT_LARGEST), read(LIMIT_MEMBER))


def over_limit(lim: Limits, size: int, member_before: int) -> str | None:
    """Why an attachment of `size` bytes is refused, or None."""
    if lim.largest is not None and size > lim.largest:
        return f"it is {human(size)}, over this community's {human(lim.largest)} limit"
    if lim.member_total is not None and member_before + size > lim.member_total:
        return (
            f"it would bring its author's attachments to {human(member_before + size)}, over "
            f"this community's {human(lim.member_total)} per member"
        )
    return None


def add_files(
    home: Home,
    paths: Iterable[Path],
    *,
    private: bool,
    keep_metadata: bool = False,
    lim: Limits | None = None,
    already: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Entry]:
    """Store files (images cleaned, private ones sealed) and return post entries.
    `progress(name, bytes done, bytes in all)` as each file is stored."""
    store = BlobStore(home)
    out: list[Entry] = []
    paths = list(paths)
    if len(paths) > entries.MAX_PER_POST:
        raise BadAttachment(f"a post may carry at most {entries.MAX_PER_POST} attachments")
    base = home.path / "tmp"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    total = already
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"{path} is not a file")
            prepared = media.prepare(path, Path(tmp), keep_metadata)
            size = prepared.path.stat().st_size
            why = over_limit(lim or Limits(), size, total)
            if why:
                raise AttachmentRefused(f"{path.name} cannot be attached: {why}")
            total += size
            key = seal.new_key() if private else None

            def step(done: int, name: str = prepared.name, size: int = size) -> None:
                if progress is not None:
                    progress(name, done, size)

            with prepared.path.open("rb") as src:
                aid, m = store.add(src, size, prepared.name, prepared.mime, key, step)
            out.append(Entry(aid, m.name, size, m.mime, key, prepared.thumb))
    return out


def describe(home: Home, entry: Entry, store: BlobStore | None = None) -> dict:
    """What a reader is told about one attachment of a post."""
    store = store or BlobStore(home)
    p = store.presence(entry.id)
    m = store.manifest(entry.id) if p is not None else None
    problem = None
    if m is not None and (m.size != entry.size or m.sealed != (entry.key is not None)):
        problem = "its data does not match what the post says; it will not be saved"
    return {
        "hash": entry.id.hex(),
        "name": entry.name,
        "size": entry.size,
        "mime": entry.mime,
        "present": p.state if p else "absent",
        "percent": p.percent if p else 0,
        "encrypted": entry.key is not None,
        "thumbnail": entry.thumb is not None,
        "problem": problem,
    }


def describe_all(home: Home, value: object) -> list[dict]:
    """Descriptions for a post's raw `attachments` value (as signed by anyone)."""
    found = entries.parse(value)
    if not found:
        return []
    store = BlobStore(home)
    return [describe(home, e, store) for e in found]


def find(home: Home, wanted: str, communities: Iterable[bytes] | None = None) -> Ref:
    """A post entry naming the attachment whose hash is (or starts with) `wanted`."""
    wanted = wanted.strip().lower()
    if len(wanted) < 8:
        raise UnknownAttachment("give at least 8 characters of the attachment's hash")
    found = {
        r.entry.id: r
        for r in entries.refs(home, communities)
        if r.entry.id.hex().startswith(wanted)
    }
    if not found:
        raise UnknownAttachment()
    if len(found) > 1:
        raise UnknownAttachment(f"{wanted!r} matches several attachments: give more of the hash")
    return next(iter(found.values()))


def save(home: Home, wanted: str, out: Path, force: bool = False) -> dict:
    """Write an attachment out, whole and verified, atomically; refuses otherwise."""
    ref = find(home, wanted)
    store = BlobStore(home)
    info = describe(home, ref.entry, store)
    if info["problem"]:
        raise BadAttachment(f"{ref.entry.name}: {info['problem']}")
    if out.is_dir():
        out = out / ref.entry.name
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists already: choose another --out or add --force")

    def fill(fh) -> None:  # noqa: ANN001
        fh.flush()
        # past the page cache, in large aligned writes by a helper thread
        # (p2p/direct.py); write_file then fsyncs it and gives it its name
        with DirectWriter(fh.fileno(), background=True) as direct:
            store.save(ref.entry.id, direct, ref.entry.key)  # type: ignore[arg-type]

    atomic.write_file(out, fill, force=force)
    os.chmod(out, 0o600)
    return {**info, "file": str(out)}
