"""`p2p search ID WORDS`: full-text search over a community's posts and chat."""

from __future__ import annotations

import click

from p2p import community as cm
from p2p.cli import safe
from p2p.cli.cmd_index import ensure
from p2p.cli.context import Context, console, emit_json, json_option, local_time, pass_ctx, say
from p2p.index.search import search as find


@click.command()
@click.argument("community_id")
@click.argument("words", nargs=-1, required=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
@pass_ctx
def search(
    ctx: Context, community_id: str, words: tuple[str, ...], limit: int, as_json: bool
) -> None:
    """Find posts and chat messages containing all of WORDS (hidden and banned left out)."""
    c = cm.resolve(ctx.home, community_id)
    ensure(ctx.home, c)
    found = find(ctx.home.docs, c.id, " ".join(words), limit)
    if as_json:
        emit_json(found)
        return
    if not found:
        console.print("Nothing found.")
    for r in found:
        where = "post" if r["kind"] == "post" else "chat"
        say(
            (r["author_name"] or "(no name)", "bold"),
            (f" {r['fingerprint']}  {local_time(r['ts'])}  {where} {safe.clean(r['id'])}", "dim"),
        )
        say("  ", ("\u2502 ", "dim"), safe.block(r["text"], "  \u2502 "))
