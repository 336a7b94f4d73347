"""`p2p usb sync DIR`: the shared drop box on a stick."""

from __future__ import annotations

from pathlib import Path

import click

from p2p.blobs.sizes import parse_size
from p2p.bundle import usb
from p2p.bundle.stick import DEFAULT_MAX_FILE_SIZE
from p2p.cli import safe
from p2p.cli.cmd_attach import attachment_lines, plan_lines
from p2p.cli.cmd_export import bundle_version_option
from p2p.cli.cmd_import import describe, summary_line
from p2p.cli.context import Context, console, emit_json, json_option, pass_ctx, plural, say
from p2p.cli.progress import meter


def _size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = text.strip().lower().rstrip("b").rstrip("i")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


@click.group("usb")
def usb_group() -> None:
    """Work with a USB stick or SD card."""


@usb_group.command("sync")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--prune", is_flag=True, help="Replace your older bundles on the stick with one.")
@click.option(
    "--max-file-size",
    default=str(DEFAULT_MAX_FILE_SIZE),
    show_default=True,
    help="Split bundles larger than this (e.g. 100M); FAT32 allows under 4 GiB.",
)
@click.option(
    "--max-size",
    metavar="SIZE",
    help="Write at most SIZE per bundle: all text first, then attachments newest first.",
)
@click.option("--no-attachments", is_flag=True, help="Write only text, no attachment data.")
@bundle_version_option
@json_option
@pass_ctx
def sync(
    ctx: Context,
    folder: Path,
    prune: bool,
    max_file_size: str,
    max_size: str | None,
    no_attachments: bool,
    bundle_version: int,
    as_json: bool,
) -> None:
    """Import new bundles from FOLDER, then write what the others there lack."""
    result = usb.sync(
        ctx.home,
        folder,
        prune=prune,
        max_file_size=_size(max_file_size),
        max_size=parse_size(max_size) if max_size else None,
        attachments=not no_attachments,
        meter=meter,
        version=bundle_version,
    )
    if as_json:
        emit_json(
            {
                "imported": [describe(r) for r in result.imported],
                "own": result.own,
                "already_imported": result.already,
                "unreadable": len(result.unreadable),
                "not_for_you": result.unreadable,
                "damaged": [{"file": f, "error": e} for f, e in result.damaged],
                "set_aside": [{"file": f, "reason": e} for f, e in result.damaged],
                "cleaned_temporary_files": result.cleaned,
                "written": [
                    {
                        "files": [str(p) for p in paths],
                        "bytes": b.size,
                        "documents": b.docs,
                        "encrypted": b.encrypted,
                        "attachment_bytes": b.extra["attachments"].sent_bytes,
                        "left_for_later": b.extra["attachments"].left,
                    }
                    for paths, b in result.written
                ],
                "pruned": [str(p) for p in result.pruned],
                "problem": str(result.problem) if result.problem else None,
            }
        )
        if result.problem is not None:
            raise SystemExit(1)
        return
    for r in result.imported:
        _line(f"imported {r.files[0].name} from {r.exporter_fingerprint}: {summary_line(r)}")
        for line in attachment_lines(r.attachments):
            say("  ", line)
    for f, e in result.damaged:
        _line(f"set aside {f}: {e}")
    skipped = []
    if result.own:
        skipped.append(f"{result.own} of yours")
    if result.already:
        skipped.append(f"{result.already} already imported")
    if result.unreadable:
        skipped.append(plural(len(result.unreadable), "bundle") + " for communities you are not in")
    if skipped:
        _line("skipped " + ", ".join(skipped))
    if result.cleaned:
        _line(f"removed {plural(len(result.cleaned), 'temporary file')} of an interrupted write")
    for paths, b in result.written:
        names = ", ".join(p.name for p in paths)
        _line(f"wrote {names} ({plural(b.docs, 'document')}, {plural(b.size, 'byte')})")
        for line in plan_lines(b.extra["attachments"]):
            say("  ", line)
    if result.problem is not None:
        raise result.problem
    if not result.written:
        _line("nothing new to write: the others on this stick have all you have")
    if result.pruned:
        _line(f"removed {plural(len(result.pruned), 'older bundle')} of yours")


def _line(text: str) -> None:
    """One line that may hold names read from the stick: never markup, no controls."""
    console.print(safe.clean(text), markup=False, highlight=False)
