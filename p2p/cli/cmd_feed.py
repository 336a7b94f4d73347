"""`p2p feed`: a community's posts, threaded."""

from __future__ import annotations

import json
from collections.abc import Iterator

import click
from rich.markup import escape

from p2p import community as cm
from p2p import feed as feed_view
from p2p.cli.cmd_attach import render as render_attachments
from p2p.cli.context import Context, console, emit_json, json_option, local_time, pass_ctx, plural


def render(posts: list[dict], depth: int = 0) -> None:
    for p in posts:
        pad = "    " * depth
        if p["removed"]:
            why = "hidden by a moderator" if p["removed"] == "hidden" else "author banned"
            console.print(f"{pad}[dim]({why})  {p['id']}[/]")
            render(p["replies"], depth + 1)
            continue
        name = escape(p["author_name"] or "(no name)")
        marks = []
        if p["deleted"]:
            marks.append("[red]deleted[/]")
        elif p["edited"]:
            marks.append("[yellow]edited[/]")
        header = (
            f"{pad}[bold]{name}[/] [dim]{p['fingerprint']}  {local_time(p['ts'])}  {p['id']}[/]"
        )
        console.print(header + ("  " + " ".join(marks) if marks else ""))
        text = "[dim](deleted)[/]" if p["deleted"] else escape(p["text"])
        console.print(f"{pad}  {text}")
        render_attachments(p.get("attachments") or [], pad)
        if p["reactions"]:
            counts = "  ".join(
                f"{escape(e)} {len(who)}" for e, who in sorted(p["reactions"].items())
            )
            console.print(f"{pad}  {counts}")
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
    console.print(f"[bold underline]{escape(title)}[/]")
    if older:
        console.print(f"[dim]({plural(older, 'older thread')} not shown: --last 0 shows all)[/]")
    if not posts:
        console.print("No posts yet.")
    render(posts)


def _stream_json(threads: Iterator[dict]) -> None:
    """A JSON list written thread by thread (memory does not grow with the feed);
    the same text `emit_json` would print for the whole list."""
    out = click.get_text_stream("stdout")
    first = True
    for t in threads:
        text = json.dumps(t, indent=2, ensure_ascii=False)
        out.write(("[\n" if first else ",\n") + "\n".join("  " + ln for ln in text.split("\n")))
        first = False
    out.write("[]\n" if first else "\n]\n")
    out.flush()


def register(cli: click.Group) -> None:
    cli.add_command(feed)
