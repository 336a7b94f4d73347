"""`p2p mod hide|unhide|ban|unban`: moderation; the signed data is kept, views change."""

from __future__ import annotations

import click

from p2p import chat, content
from p2p import community as cm
from p2p.cli.context import Context, console, emit_json, json_option, pass_ctx
from p2p.errors import UnknownPost
from p2p.identity import fingerprint


@click.group()
def mod() -> None:
    """Moderate a community (owner and moderators)."""


def _post_or_message(ctx: Context, c: cm.Community, wanted: str) -> dict:
    try:
        return content.find_post(ctx.home, c, wanted)
    except UnknownPost:
        message = chat.find_message(ctx.home, c, wanted)
        if message is None:
            raise
        return message


def _hidden(ctx: Context, community_id: str, post: str, hidden: bool, as_json: bool) -> None:
    c = cm.resolve(ctx.home, community_id)
    target = _post_or_message(ctx, c, post)
    (cm.hide if hidden else cm.unhide)(ctx.home, c, target["id"])
    if as_json:
        emit_json({"id": target["id"], "hidden": hidden})
    else:
        console.print(f"{target['id']} is {'hidden' if hidden else 'shown again'}")


def _banned(ctx: Context, community_id: str, member: str, banned: bool, as_json: bool) -> None:
    c = cm.resolve(ctx.home, community_id)
    key = cm.resolve_member(ctx.home, c, member)
    (cm.ban if banned else cm.unban)(ctx.home, c, key)
    if as_json:
        emit_json({"member": key.hex(), "fingerprint": fingerprint(key), "banned": banned})
    else:
        console.print(f"{fingerprint(key)} is {'banned' if banned else 'no longer banned'}")


@mod.command()
@click.argument("community_id")
@click.argument("post")
@json_option
@pass_ctx
def hide(ctx: Context, community_id: str, post: str, as_json: bool) -> None:
    """Hide POST (or a chat message) from everyone's view of the community."""
    _hidden(ctx, community_id, post, True, as_json)


@mod.command()
@click.argument("community_id")
@click.argument("post")
@json_option
@pass_ctx
def unhide(ctx: Context, community_id: str, post: str, as_json: bool) -> None:
    """Show a hidden POST (or chat message) again."""
    _hidden(ctx, community_id, post, False, as_json)


@mod.command()
@click.argument("community_id")
@click.argument("member")
@json_option
@pass_ctx
def ban(ctx: Context, community_id: str, member: str, as_json: bool) -> None:
    """Ban MEMBER: their posts, messages and reactions disappear from views."""
    _banned(ctx, community_id, member, True, as_json)


@mod.command()
@click.argument("community_id")
@click.argument("member")
@json_option
@pass_ctx
def unban(ctx: Context, community_id: str, member: str, as_json: bool) -> None:
    """Lift a ban: MEMBER's posts, messages and reactions show again."""
    _banned(ctx, community_id, member, False, as_json)
