"""`p2p demo`: show the shipped demo community in a throwaway home."""

from __future__ import annotations

import click

from p2p.cli.context import Context, pass_ctx


@click.command()
@pass_ctx
def demo(ctx: Context) -> None:
    """Build a sample community and show its feed (placeholder until bundles land)."""
    from p2p import community as cm
    from p2p import content
    from p2p.cli.cmd_feed import render
    from p2p import feed as feed_view

    home = ctx.home
    if not home.has_identity():
        home.create_identity(None)
    cm.set_profile(home, "Demo", None)
    c = cm.create(home, "Demo village")
    p = content.post(home, c, "Welcome to the demo community")
    content.post(home, c, "A reply", reply_to=p["id"])
    render(feed_view.thread(home, c))


def register(cli: click.Group) -> None:
    cli.add_command(demo)
