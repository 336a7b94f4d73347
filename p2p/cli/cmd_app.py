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
@click.option(
    "--lan-port",
    default=7420,
    show_default=True,
    type=int,
    help="TCP port for Wi-Fi sync (0: any free port; a taken port falls back to any).",
)
@click.option("--no-mdns", is_flag=True, help="Wi-Fi sync without announcing (peers by address).")
@pass_ctx
def app(ctx: Context, no_browser: bool, lan_host: str | None, lan_port: int, no_mdns: bool) -> None:
    """Open the app in your browser (local only; Ctrl-C stops it)."""
    from p2p.app.serve import run

    def say(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()

    run(
        ctx.home_path,
        open_browser=not no_browser,
        lan_host=lan_host,
        lan_port=lan_port,
        mdns=not no_mdns,
        say=say,
    )
