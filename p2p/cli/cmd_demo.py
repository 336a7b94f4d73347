"""`p2p demo`: import the shipped demo community and show it."""

from __future__ import annotations

from pathlib import Path

import click

from p2p import chat, invites
from p2p import community as cm
from p2p import feed as feed_view
from p2p.bundle.importer import import_bundle
from p2p.bundle.verify import verify_bundle
from p2p.cli import safe
from p2p.cli.cmd_feed import render
from p2p.cli.cmd_import import summary_line
from p2p.cli.context import Context, console, pass_ctx, plural, say, warn


def shipped() -> Path:
    """The repository's bundles/ folder (the demo ships with the source)."""
    return Path(__file__).resolve().parents[2] / "bundles"


@click.command()
@click.option(
    "--bundles",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder holding demo.p2p and demo-invite.p2p.",
)
@click.option("--app", "open_app", is_flag=True, help="Then show it in the app (browser).")
@pass_ctx
def demo(ctx: Context, folder: Path | None, open_app: bool) -> None:
    """Verify and import the demo bundle into this home, then show its feed.

    Use a throwaway home: p2p --home "$(mktemp -d)" demo   (--app: in the browser)
    """
    folder = folder or shipped()
    bundle, invite = folder / "demo.p2p", folder / "demo-invite.p2p"
    home = ctx.new_home()
    if not home.has_identity():
        home.create_identity(None)
        cm.set_profile(home, "Visitor", None)
        warn("created an unprotected demo identity in this home; use a throwaway --home")
    checked = verify_bundle([bundle])
    say(
        f"verified {bundle.name}: {plural(len(checked.docs), 'document')}, "
        f"{plural(checked.signatures_checked, 'signature')}, signed by "
        f"{checked.as_json()['exporter_fingerprint']}"
    )
    c = invites.join(home, invite.read_bytes())
    result = import_bundle(home, [bundle])
    say(f"imported {bundle.name}: {summary_line(result)}")
    console.print()
    say((cm.settings(home, c).get("name", c.name), "bold underline"), "  ", (c.hex, "dim"))
    render(feed_view.thread(home, c))
    for room in chat.rooms(home, c):
        console.print()
        name = safe.clean(room["room"])
        say((f"#{name}", "bold"), (f" (p2p chat show {c.hex[:8]} --room {name})", "dim"))
        for m in chat.messages(home, c, room["room"]):
            say("  ", (m["author_name"] or m["fingerprint"], "bold"), ": ", m["text"])
    if open_app:
        from p2p.app.serve import run

        console.print()
        run(ctx.home_path, say=lambda line: click.echo(line))
