"""`p2p profile set|show`."""

from __future__ import annotations

import click

from p2p import community as cm
from p2p.cli import safe
from p2p.cli.context import Context, console, emit_json, json_option, pass_ctx, say


@click.group()
def profile() -> None:
    """Your display name and bio, shown next to your posts."""


@profile.command("set")
@click.option("--name")
@click.option("--bio")
@json_option
@pass_ctx
def set_(ctx: Context, name: str | None, bio: str | None, as_json: bool) -> None:
    """Set your display name and/or bio in every community you are in."""
    if name is None and bio is None:
        raise click.UsageError("give --name and/or --bio")
    cm.set_profile(ctx.home, name, bio)
    data = ctx.home.meta("profile")
    if as_json:
        emit_json(data)
    else:
        console.print("Profile updated")


@profile.command("show")
@json_option
@pass_ctx
def show(ctx: Context, as_json: bool) -> None:
    """Show your profile."""
    data = ctx.home.meta("profile") or {}
    if as_json:
        emit_json(data)
        return
    assert isinstance(data, dict)
    say("name: ", data.get("name") or "")
    say("bio:  ", safe.block(data.get("bio") or "", "      "))
