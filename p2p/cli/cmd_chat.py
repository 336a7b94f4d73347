"""`p2p chat send|show|rooms`: group chat in a community's rooms."""

from __future__ import annotations

from pathlib import Path

import click

from p2p import chat
from p2p import community as cm
from p2p.cli import safe
from p2p.cli.cmd_attach import attach_option, entries_for, keep_metadata_option
from p2p.cli.cmd_attach import render as render_attachments
from p2p.cli.cmd_index import ensure
from p2p.cli.context import (
    Context,
    console,
    emit_json,
    json_option,
    local_time,
    pass_ctx,
    plural,
    say,
)


@click.group("chat")
def chat_group() -> None:
    """Group chat in a community (rooms; 'general' by default)."""


@chat_group.command("send")
@click.argument("community_id")
@click.argument("text")
@click.option("--room", default=chat.DEFAULT_ROOM, show_default=True, help="Room to write in.")
@attach_option
@keep_metadata_option
@json_option
@pass_ctx
def send(
    ctx: Context,
    community_id: str,
    text: str,
    room: str,
    attach_files: tuple[Path, ...],
    keep_metadata: bool,
    as_json: bool,
) -> None:
    """Write TEXT in a chat room (with --attach FILE, files too)."""
    c = cm.resolve(ctx.home, community_id)
    made = entries_for(ctx, c, attach_files, keep_metadata)
    sent = chat.send(ctx.home, c, text, room, attachments=made)
    if as_json:
        emit_json(sent)
    else:
        say(f"Sent to #{sent['room']} ({sent['id']})")


@chat_group.command("show")
@click.argument("community_id")
@click.option("--room", default=chat.DEFAULT_ROOM, show_default=True)
@click.option("--last", type=int, default=50, show_default=True, help="How many messages.")
@json_option
@pass_ctx
def show(ctx: Context, community_id: str, room: str, last: int, as_json: bool) -> None:
    """Show the latest messages of a room."""
    c = cm.resolve(ctx.home, community_id)
    ensure(ctx.home, c)
    shown = chat.messages(ctx.home, c, room, last=last if last > 0 else None)
    if as_json:
        emit_json(shown)
        return
    say((f"#{chat.check_room(room)}", "bold"))
    if not shown:
        console.print("No messages yet.")
    for m in shown:
        name = m["author_name"] or m["fingerprint"]
        say((local_time(m["ts"]), "dim"), " ", (name, "bold"), ": ", m["text"])
        render_attachments(m.get("attachments") or [])


@chat_group.command("rooms")
@click.argument("community_id")
@json_option
@pass_ctx
def rooms(ctx: Context, community_id: str, as_json: bool) -> None:
    """List the rooms that have messages."""
    c = cm.resolve(ctx.home, community_id)
    ensure(ctx.home, c)
    found = chat.rooms(ctx.home, c)
    if as_json:
        emit_json(found)
        return
    if not found:
        console.print("No chat yet: 'p2p chat send ID TEXT' starts #general.")
    for r in found:
        room_name = f"#{safe.clean(r['room'])}"
        say(f"{room_name:20} {plural(r['messages'], 'message'):14} {local_time(r['last'])}")
