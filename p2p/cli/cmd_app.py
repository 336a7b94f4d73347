"""`p2p app`: the local web app in the browser."""

from __future__ import annotations

import sys

import click

from p2p.cli.context import Context, pass_ctx


@click.command()
@click.option("--no-browser", is_flag=True, help="Only print the address to open.")
@click.option(
    "--lan-host",
    metavar="ADDRESS",
    help="Address 'Sync on this Wi-Fi' listens on (default: this machine's LAN address).",
)
@click.option("--no-mdns", is_flag=True, help="Wi-Fi sync without announcing (peers by address).")
@pass_ctx
def app(ctx: Context, no_browser: bool, lan_host: str | None, no_mdns: bool) -> None:
    """Open the app in your browser (local only; Ctrl-C stops it)."""
    from p2p.app.serve import run

    def say(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()

    run(ctx.home_path, open_browser=not no_browser, lan_host=lan_host, mdns=not no_mdns, say=say)
