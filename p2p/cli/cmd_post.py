"""`p2p post|react|edit|delete`."""

from __future__ import annotations

from pathlib import Path

import click

from p2p import community as cm
from p2p import content
from p2p.cli import safe
from p2p.cli.cmd_attach import attach_option, entries_for, keep_metadata_option
from p2p.cli.context import Context, emit_json, json_option, pass_ctx


@click.command()
@click.argument("community_id")
@click.argument("text")
@click.option("--reply-to", metavar="POST", help="Reply to this post id (or unique prefix).")
@attach_option
@keep_metadata_option
@json_option
@pass_ctx
def post(
    ctx: Context,
    community_id: str,
    text: str,
    reply_to: str | None,
    attach_files: tuple[Path, ...],
    keep_metadata: bool,
    as_json: bool,
) -> None:
    """Post TEXT to a community (with --attach FILE, files too)."""
    c = cm.resolve(ctx.home, community_id)
    made = entries_for(ctx, c, attach_files, keep_metadata)
    created = content.post(ctx.home, c, text, reply_to, attachments=made)
    if as_json:
        emit_json(created)
    else:
        click.echo(f"Posted {created['id']}")  # plain click: rich costs `post` ~0.2 s
        for a in created.get("attachments", []):
            click.echo(f"  attached {safe.clean(a['name'])} ({a['hash'][:12]})")


@click.command()
@click.argument("community_id")
@click.argument("post_id")
@click.argument("emoji")
@click.option("--remove", is_flag=True, help="Take back your EMOJI reaction.")
@json_option
@pass_ctx
def react(
    ctx: Context, community_id: str, post_id: str, emoji: str, remove: bool, as_json: bool
) -> None:
    """React to a post with EMOJI (--remove takes it back)."""
    c = cm.resolve(ctx.home, community_id)
    done = content.react(ctx.home, c, post_id, emoji, remove=remove)
    if as_json:
        emit_json(done)
    else:
        verb = "Took back" if remove else "Reacted"
        click.echo(f"{verb} {safe.clean(emoji)} {'on' if remove else 'to'} {done['id']}")


@click.command()
@click.argument("community_id")
@click.argument("post_id")
@click.argument("text")
@json_option
@pass_ctx
def edit(ctx: Context, community_id: str, post_id: str, text: str, as_json: bool) -> None:
    """Replace the text of one of your posts."""
    c = cm.resolve(ctx.home, community_id)
    done = content.edit(ctx.home, c, post_id, text)
    if as_json:
        emit_json(done)
    else:
        click.echo(f"Edited {done['id']}")


@click.command()
@click.argument("community_id")
@click.argument("post_id")
@json_option
@pass_ctx
def delete(ctx: Context, community_id: str, post_id: str, as_json: bool) -> None:
    """Delete one of your posts (its text is blanked; a marker stays)."""
    c = cm.resolve(ctx.home, community_id)
    done = content.delete(ctx.home, c, post_id)
    if as_json:
        emit_json(done)
    else:
        click.echo(f"Deleted {done['id']}")
