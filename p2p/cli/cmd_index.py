"""`p2p index rebuild`: throw the derived indexes away and read every document again."""

from __future__ import annotations

import time
from contextlib import ExitStack

import click

from p2p import community as cm
from p2p import index
from p2p.cli.context import Context, console, emit_json, json_option, pass_ctx, plural
from p2p.cli.progress import Update, meter
from p2p.home import Home


def ensure(home: Home, c: cm.Community) -> None:
    """Index a community before a view reads it, with progress on a terminal: the first
    view after upgrading a large store reads every document once (afterwards, nothing).

    The meter starts with the first document to read, so a view with nothing to index
    (nearly always) draws nothing and does not import the progress display."""
    with ExitStack() as stack:
        update: Update | None = None

        def progress(done: int, total: int, n: int) -> None:
            nonlocal update
            if update is None:
                update = stack.enter_context(meter(f"indexing {c.name} (once)", unit="documents"))
            update(done, total=total, count=n)

        index.refresh(home.docs, c.id, progress)


@click.group("index")
def index_group() -> None:
    """The indexes views and search read (derived from the documents; rebuildable)."""


@index_group.command()
@click.argument("community_id", required=False)
@json_option
@pass_ctx
def rebuild(ctx: Context, community_id: str | None, as_json: bool) -> None:
    """Rebuild the indexes of one community (or of all) from their documents."""
    home = ctx.home
    chosen = [cm.resolve(home, community_id)] if community_id else cm.all_communities(home)
    out: list[dict] = []
    for c in chosen:
        start = time.monotonic()
        with meter(f"indexing {c.name}", unit="documents") as update:
            docs = index.rebuild(
                home.docs, c.id, lambda done, total, n: update(done, total=total, count=n)
            )
        out.append(
            {
                "community": c.hex,
                "documents": docs,
                "bad_entries": index.bad_entries(home.store.db, c.id),
                "seconds": round(time.monotonic() - start, 3),
            }
        )
    if as_json:
        emit_json(out)
        return
    for r in out:
        bad = f", {plural(r['bad_entries'], 'malformed entry')} skipped" if r["bad_entries"] else ""
        console.print(
            f"{r['community'][:12]}: {plural(r['documents'], 'document')} indexed"
            f" in {r['seconds']:.2f} s{bad}"
        )
