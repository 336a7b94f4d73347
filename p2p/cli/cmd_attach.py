"""`p2p attachments ID POST` and `p2p attachment save HASH --out PATH`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from p2p import community as cm
from p2p import content
from p2p.cli.context import Context, console, emit_json, json_option, pass_ctx, plural, say

if TYPE_CHECKING:
    from p2p.blobs.exchange import Plan, Received

# The attachment store (p2p.blobs) is imported where attachments are handled: `post`,
# `chat send` and `chat show` use this module, and most of their runs have none.

attach_option = click.option(
    "--attach",
    "attach_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Attach a file (repeat for several). Images lose their EXIF/GPS metadata.",
)
keep_metadata_option = click.option(
    "--keep-metadata",
    is_flag=True,
    help="Attach images byte for byte, with their camera and location metadata.",
)


def entries_for(ctx: Context, c: cm.Community, files: tuple[Path, ...], keep: bool) -> list[dict]:
    """Store FILES for a post in community `c`, within its limits; post entries."""
    if not files:
        return []
    from p2p.blobs import attach
    from p2p.cli.progress import meter

    lim = attach.limits(cm.settings(ctx.home, c))
    total = sum(f.stat().st_size for f in files)
    with meter("storing attachments", total, unit="files") as update:
        before: dict[str, int] = {}

        def step(name: str, done: int, _size: int) -> None:
            before[name] = done
            update(sum(before.values()), total, len(before))

        made = attach.add_files(
            ctx.home, files, private=c.private, keep_metadata=keep, lim=lim, progress=step
        )
    return [e.as_doc() for e in made]


def state_part(a: dict) -> tuple[str, str]:
    """The attachment's state as a (plain text, style) part for `say`."""
    if a["problem"]:
        return f"refused: {a['problem']}", "red"
    if a["present"] == "whole":
        return "here", "green"
    if a["present"] == "partial":
        return f"{a['percent']}% here", "yellow"
    return "not here yet", "dim"


def render(items: list[dict], pad: str = "") -> None:
    """One line per attachment: name, size, state (member text never read as markup)."""
    if not items:
        return
    from p2p.blobs.sizes import human

    for a in items:
        say(
            f"{pad}  ",
            (f"📎 {a['name']}", "cyan"),
            f" ({human(a['size'])}, {a['mime']}) ",
            state_part(a),
            " ",
            (a["hash"][:12], "dim"),
        )


def attachments_json(r: Received) -> dict:
    return {
        "chunks": r.chunks,
        "bytes": r.size,
        "completed": r.completed,
        "refused": r.refused,
    }


def attachment_lines(r: Received) -> list[str]:
    """What an import or sync did with attachments, one plain line each."""
    from p2p.blobs.sizes import human

    out = []
    if r.chunks:
        done = f"; complete: {', '.join(r.completed[:5])}" if r.completed else ""
        out.append(f"attachments: {plural(r.chunks, 'chunk')}, {human(r.size)}{done}")
    out += [f"attachment refused: {why}" for why in r.refused[:20]]
    return out


def plan_lines(plan: Plan) -> list[str]:
    from p2p.blobs.sizes import human

    out = []
    if plan.sent_chunks:
        out.append(
            f"attachments: {human(plan.sent_bytes)} in {plural(plan.sent_chunks, 'chunk')} "
            f"({plan.sent_attachments} whole)"
        )
    if plan.left:
        total = sum(x["bytes"] for x in plan.left)
        names = ", ".join(x["name"] for x in plan.left[:5])
        out.append(
            f"left for a later trip (over --max-size): {plural(len(plan.left), 'attachment')}, "
            f"{human(total)} ({names})"
        )
    return out


@click.command("attachments")
@click.argument("community_id")
@click.argument("post_id")
@json_option
@pass_ctx
def attachments(ctx: Context, community_id: str, post_id: str, as_json: bool) -> None:
    """List a post's attachments: hash, name, size, type and whether they are here."""
    c = cm.resolve(ctx.home, community_id)
    found = content.find_post(ctx.home, c, post_id)
    items = found.get("attachments") or []
    if as_json:
        emit_json(items)
        return
    if not items:
        console.print("This post has no attachments.")
    for a in items:
        say(
            f"{a['hash']}  ",
            (a["name"], "bold"),
            f"  {plural(a['size'], 'byte')}  {a['mime']}  ",
            state_part(a),
        )


@click.group("attachment")
def attachment_group() -> None:
    """Work with one attachment (by its hash)."""


@attachment_group.command("save")
@click.argument("hash_")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="File or folder.")
@click.option("--force", is_flag=True, help="Replace an existing file.")
@json_option
@pass_ctx
def save(ctx: Context, hash_: str, out: Path, force: bool, as_json: bool) -> None:
    """Write an attachment out; refuses one that is incomplete or does not verify."""
    from p2p.blobs import attach

    done = attach.save(ctx.home, hash_, out, force=force)
    if as_json:
        emit_json(done)
        return
    say("Saved ", done["name"], f" ({plural(done['size'], 'byte')}) to ", done["file"])
