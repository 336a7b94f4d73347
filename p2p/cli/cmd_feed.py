"""`p2p feed`: a community's posts, threaded."""

from __future__ import annotations

import json
from collections.abc import Iterator

import click

from p2p import community as cm
from p2p import feed as feed_view
from p2p.cli import safe
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

BAR = "\u2502 "  # "│ " starts every line of a post's text: no text can look like a header


def render(posts: list[dict], depth: int = 0) -> None:
    """Threads on the terminal; member text only through `safe` (never markup, never raw)."""
    for p in posts:
        pad = "    " * depth
        if p["removed"]:
            why = "hidden by a moderator" if p["removed"] == "hidden" else "author banned"
            say(pad, (f"({why})  {p['id']}", "dim"))
            render(p["replies"], depth + 1)
            continue
        mark: tuple[str, str] | str = ""
        if p["deleted"]:
            mark = ("  deleted", "red")
        elif p["edited"]:
            mark = ("  edited", "yellow")
        say(
            pad,
            (p["author_name"] or "(no name)", "bold"),
            (f" {p['fingerprint']}  {local_time(p['ts'])}  {safe.clean(p['id'])}", "dim"),
            mark,
        )
        if p["deleted"]:
            say(pad, "  ", (BAR, "dim"), ("(deleted)", "dim"))
        else:
            lead = f"{pad}  "
            say(lead, (BAR, "dim"), safe.block(p["text"], lead + BAR))
        if p.get("attachments"):
            from p2p.cli.cmd_attach import render as render_attachments  # images: loaded if needed

            render_attachments(p["attachments"], pad)
        if p["reactions"]:
            counts = "  ".join(
                f"{safe.clean(e)} {len(who)}" for e, who in sorted(p["reactions"].items())
            )
            say(pad, "  ", counts)
        render(p["replies"], depth + 1)


@click.command()
@click.argument("community_id")
@click.option(
    "--last",
    type=int,
    default=None,
    help="Only the N most recent threads (default: 30 on screen, all with --json; 0: all).",
)
@json_option
@pass_ctx
def feed(ctx: Context, community_id: str, last: int | None, as_json: bool) -> None:
    """Show a community's feed: threads, reactions, edits."""
    c = cm.resolve(ctx.home, community_id)
    ensure(ctx.home, c)
    if last is None:
        last = 0 if as_json else 30
    if as_json and last <= 0:
        _stream_json(feed_view.stream(ctx.home, c))
        return
    posts, older = feed_view.latest(ctx.home, c, last)
    if as_json:
        emit_json(posts)
        return
    title = cm.settings(ctx.home, c).get("name", c.name)
    say((title, "bold underline"))
    if older:
        say((f"({plural(older, 'older thread')} not shown: --last 0 shows all)", "dim"))
    if not posts:
        console.print("No posts yet.")
    render(posts)


def _stream_json(threads: Iterator[dict]) -> None:
    """A JSON list written thread by thread (memory does not grow with the feed);
    the same text `emit_json` would print for the whole list."""
    from p2p.cli.context import _default
    from p2p.cli.safe import json_safe

    out = click.get_text_stream("stdout")
    pending: list[str] = []
    size = 0
    first = True
    for t in threads:
        text = json_safe(json.dumps(t, indent=2, ensure_ascii=False, default=_default))
        pending.append(("[\n" if first else ",\n") + text.replace("\n", "\n  ").join(["  ", ""]))
        size += len(text)
        first = False
        if size > 1 << 20:  # write in large blocks: one write per thread is slow on a pipe
            out.write("".join(pending))
            pending, size = [], 0
    pending.append("[]\n" if first else "\n]\n")
    out.write("".join(pending))
    out.flush()
