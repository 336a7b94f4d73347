"""`p2p dm send|show`: direct messages, sealed to the recipient."""

from __future__ import annotations

import click

from p2p import community as cm
from p2p import dm
from p2p.cli.cmd_index import ensure
from p2p.cli.context import Context, console, emit_json, json_option, local_time, pass_ctx, say
from p2p.errors import UnknownMemberKey, UnknownPeer


@click.group("dm")
def dm_group() -> None:
    """Direct messages to one member; only the two of you can read them."""


@dm_group.command("send")
@click.argument("community_id")
@click.argument("member")
@click.argument("text")
@json_option
@pass_ctx
def send(ctx: Context, community_id: str, member: str, text: str, as_json: bool) -> None:
    """Send TEXT to MEMBER (fingerprint or display name), sealed to their key."""
    c = cm.resolve(ctx.home, community_id)
    try:
        key = cm.resolve_member(ctx.home, c, member)
    except UnknownPeer:
        raise UnknownMemberKey(
            f"no member matching {member!r} is known here yet, so neither is their encryption"
            " key: a member becomes known when something they wrote (their profile, a post)"
            " reaches you; sync with them first ('p2p usb sync' or 'p2p sync')",
            member=member,
        ) from None
    sent = dm.send(ctx.home, c, key, text)
    if as_json:
        emit_json(sent)
    else:
        name = cm.display_name(ctx.home, c, key) or "them"
        say("Sealed for ", name, f"; it travels with the community ({sent['id']})")


@dm_group.command("show")
@click.argument("community_id")
@click.argument("member", required=False)
@json_option
@pass_ctx
def show(ctx: Context, community_id: str, member: str | None, as_json: bool) -> None:
    """Your direct messages (with MEMBER, or all conversations)."""
    c = cm.resolve(ctx.home, community_id)
    ensure(ctx.home, c)
    key = cm.resolve_member(ctx.home, c, member) if member else None
    found = dm.messages(ctx.home, c, key)
    if as_json:
        emit_json(found)
        return
    if not found:
        console.print("No direct messages.")
    for m in found:
        other = m["with_name"] or m["with_fingerprint"]
        arrow = f"to {other}" if m["sent"] else f"from {other}"
        say((local_time(m["ts"]), "dim"), " ", (arrow, "bold"), ": ", m["text"])
