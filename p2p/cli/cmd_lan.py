"""`p2p serve`, `p2p sync`, `p2p peers`: LAN sync."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import signal
import sys
from pathlib import Path
from typing import Any

import click

from p2p.cli import safe
from p2p.cli.context import (
    Context,
    console,
    emit_json,
    json_option,
    pass_ctx,
    plural,
    say,
)
from p2p.cli.progress import bar
from p2p.errors import P2PError
from p2p.home import Home
from p2p.identity import fingerprint
from p2p.lan import discovery
from p2p.lan.server import Server, default_address, summary, sync_with
from p2p.peers import known, name_of


def _token_file(home: Home) -> Path:
    """Where `serve` notes its current announcement token (in the home, never on a stick)."""
    return home.path / "serve.token"


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"{text!r} is not HOST:PORT")
    if not 0 < int(port) < 65536:
        raise click.BadParameter(f"{text!r}: the port must be between 1 and 65535")
    return host, int(port)


@click.command()
@click.option(
    "--host", help="Address to listen and announce on (default: this machine's LAN address)."
)
@click.option(
    "--port",
    default=7420,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port (0: any free port).",
)
@click.option("--no-mdns", is_flag=True, help="Listen without announcing (peers use --peer).")
@click.option("--duration", type=float, default=None, hidden=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line per event.")
@pass_ctx
def serve(
    ctx: Context,
    host: str | None,
    port: int,
    no_mdns: bool,
    duration: float | None,
    as_json: bool,
) -> None:
    """Announce yourself on the local network and accept sync sessions until Ctrl-C."""
    home = ctx.home
    home.identity  # unlock before serving  # noqa: B018
    address = host or default_address()

    def say(text: str, **event: object) -> None:
        if as_json:
            click.echo(json.dumps({**event, "message": text}, ensure_ascii=False), nl=True)
            sys.stdout.flush()
        else:
            console.print(text, highlight=False, markup=False)

    async def main() -> None:
        server = Server(
            home,
            address,
            port,
            log=lambda m: say(m, event="log"),
            on_session=(lambda r: say(summary(r), event="session", **r.as_json()))
            if as_json
            else None,
        )
        bound = await server.start()
        announcer = None
        if not no_mdns:
            announcer = discovery.Announcer(address, bound, token_file=_token_file(home))
            await announcer.start()
        how = "without announcing" if no_mdns else "announced by mDNS"
        say(
            f"Serving on {address}:{bound} ({how}); Ctrl-C to stop",
            event="serving",
            host=address,
            port=bound,
            mdns=not no_mdns,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            if duration is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), duration)
            else:
                await stop.wait()
        finally:
            if announcer is not None:
                await announcer.close()
            await server.close()
            say("Stopped" + ("" if no_mdns else "; announcement withdrawn"), event="stopped")

    asyncio.run(main())


@click.command()
@click.option(
    "--peer",
    "peers",
    multiple=True,
    metavar="HOST:PORT",
    help="Sync with this address (no mDNS needed); may repeat.",
)
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to look for peers.")
@click.option("--interface", help="Address whose network to browse (default: the LAN address).")
@json_option
@pass_ctx
def sync(
    ctx: Context, peers: tuple[str, ...], timeout: float, interface: str | None, as_json: bool
) -> None:
    """Find peers on the local network (or use --peer), sync with each, and exit."""
    home = ctx.home
    home.identity  # noqa: B018

    async def main() -> list[dict]:
        targets = [_hostport(p) for p in peers]
        if not targets:
            found = await discovery.browse(
                interface or default_address(), timeout, discovery.own_tokens(_token_file(home))
            )
            targets = [(p.host, p.port) for p in found]
        out = []
        for host, port in targets:
            try:
                with bar(f"syncing with {host}:{port}") as update:
                    r = await sync_with(home, host, port, progress=update)
            except P2PError as exc:
                out.append({"peer": f"{host}:{port}", "ok": False, "error": str(exc)})
                continue
            out.append({"peer": f"{host}:{port}", "ok": True, **r.as_json(), "summary": summary(r)})
        return out

    results = asyncio.run(main())
    if as_json:
        emit_json(results)
    else:
        if not results:
            console.print("No peers found (is anyone running 'p2p serve' on this network?)")
        for r in results:
            if r["ok"]:
                console.print(f"{r['peer']}: {r['summary']}", markup=False)
                for x in r["rejected"]:
                    what = (x["change"] or "record")[:12]
                    console.print(f"  rejected {what}: {x['reason']}", markup=False)
                for line in r.get("forks", []):
                    console.print(f"  {line}", markup=False)
            else:
                say((f"{r['peer']}:", "red"), f" {r['error']}", err=True)
    rejected = sum(len(r["rejected"]) for r in results if r["ok"])
    if rejected:
        raise P2PError(
            f"{plural(rejected, 'change')} received {'was' if rejected == 1 else 'were'} "
            "rejected (forged or not allowed); "
            "nothing of them was kept"
        )
    if any(not r["ok"] for r in results):
        raise SystemExit(1)


@click.command()
@click.option("--timeout", default=3.0, show_default=True)
@click.option("--interface", help="Address whose network to browse.")
@json_option
@pass_ctx
def peers(ctx: Context, timeout: float, interface: str | None, as_json: bool) -> None:
    """List peers visible on the network now, and peers you synced with before."""
    home = ctx.home
    visible = asyncio.run(
        discovery.browse(
            interface or default_address(), timeout, discovery.own_tokens(_token_file(home))
        )
    )
    past: list[dict[str, Any]] = [
        {"fingerprint": fingerprint(k), "name": name_of(home, k), "last_seen": seen, "via": via}
        for k, seen, via in known(home)
    ]
    if as_json:
        emit_json({"visible": [{"host": p.host, "port": p.port} for p in visible], "known": past})
        return
    console.print(f"{plural(len(visible), 'peer')} visible now" + (":" if visible else ""))
    for p in visible:
        console.print(f"  {p.host}:{p.port}")
    console.print(f"{plural(len(past), 'known peer')}" + (":" if past else ""))
    for k in past:
        when = dt.datetime.fromtimestamp(k["last_seen"]).strftime("%Y-%m-%d %H:%M")
        name = safe.clean(k["name"]) if k["name"] else "(no name)"
        console.print(f"  {k['fingerprint']}  {name:20} {k['via']:6} {when}", markup=False)
