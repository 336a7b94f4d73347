"""`p2p serve`, `p2p sync`, `p2p peers`: LAN sync (thin faces over p2p.lan)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

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
from p2p.cli.safe import safe_console
from p2p.errors import (
    LanError,
    NoPeerFound,
    NoSharedCommunity,
    P2PError,
    PeerUnreachable,
    SameIdentity,
)
from p2p.home import Home
from p2p.identity import fingerprint
from p2p.lan import discovery
from p2p.lan.interfaces import lan_addresses
from p2p.lan.node import Node
from p2p.lan.server import summary, sync_with
from p2p.peers import forget_addresses, known, name_of, remember, remembered

HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9-]{1,63})*\.?$"
)


class BadArgument(click.ClickException):
    """A malformed option value: one plain line, exit status 2."""

    exit_code = 2


def _port(text: str, allow_zero: bool) -> int:
    low = 0 if allow_zero else 1
    if not text.isdigit() or not low <= int(text) <= 65535:
        raise BadArgument(f"{text!r}: the port must be between {low} and 65535")
    return int(text)


def _address(text: str) -> str:
    """An IP address (IPv6 may carry a %zone) or a host name."""
    try:
        ipaddress.ip_address(text.split("%")[0])
        return text
    except ValueError:
        pass
    if ":" in text or not HOSTNAME.match(text) or re.fullmatch(r"[0-9.]+", text):
        raise BadArgument(f"{text!r} is not an IP address or host name")
    return text


def parse_hostport(text: str) -> tuple[str, int]:
    """HOST:PORT, or [IPv6]:PORT."""
    m = re.fullmatch(r"\[([^\]]+)\]:(\S+)", text)
    if m:
        host, port = m.group(1), m.group(2)
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise BadArgument(f"{text!r} is not HOST:PORT (for example 192.168.1.20:7420)")
    return _address(host), _port(port, allow_zero=False)


class PortType(click.ParamType):
    name = "PORT"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        return value if isinstance(value, int) else _port(str(value), allow_zero=True)


def _browse_on() -> list[str]:
    """Every IPv4 address, and the IPv6 link-local one of interfaces without IPv4."""
    found = lan_addresses()
    with_v4 = {a.interface for a in found if not a.ipv6}
    return [a.host for a in found if not a.ipv6 or a.interface not in with_v4]


def _token_file(home: Home) -> Path:
    """Where `serve` notes its current announcement tokens (in the home, never on a stick)."""
    return home.path / "serve.token"


@click.command()
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="Address to listen and announce on; may repeat (default: every network interface).",
)
@click.option(
    "--port", default=7420, show_default=True, type=PortType(), help="TCP port (0: any free port)."
)
@click.option("--no-mdns", is_flag=True, help="Listen without announcing (peers use --peer).")
@click.option("--no-auto", is_flag=True, help="Only accept sessions; do not sync on your own.")
@click.option("--duration", type=float, default=None, hidden=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line per event.")
@pass_ctx
def serve(
    ctx: Context,
    hosts: tuple[str, ...],
    port: int,
    no_mdns: bool,
    no_auto: bool,
    duration: float | None,
    as_json: bool,
) -> None:
    """Listen and announce on the local network, sync with every peer that shows up,
    until Ctrl-C."""
    for h in hosts:
        try:
            ipaddress.ip_address(h.split("%")[0])
        except ValueError:
            raise BadArgument(f"--host {h!r} is not an IP address of this machine") from None
    home = ctx.home
    home.identity  # unlock before serving  # noqa: B018

    def say(event: dict) -> None:
        if as_json:
            click.echo(json.dumps(event, ensure_ascii=False, default=str))
            sys.stdout.flush()
        elif event["event"] == "serving":
            console.print(f"{event['message']}; Ctrl-C to stop", highlight=False)
        else:
            console.print(event["message"], highlight=False, markup=False)
        sys.stdout.flush()

    async def main() -> None:
        node = Node(
            home,
            hosts=list(hosts) or None,
            port=port,
            mdns=not no_mdns,
            auto_sync=not no_auto and not no_mdns,
            on_event=say,
            token_file=_token_file(home),
        )
        try:
            await node.start()
        except OSError as exc:
            await node.close(0)
            where = ", ".join(hosts) or "this machine's addresses"
            raise LanError(
                f"cannot listen on {where} port {port}: {exc.strerror or exc} "
                "(is the port in use, or the address not this machine's?)"
            ) from None
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
            await node.close()
            say(
                {
                    "event": "stopped",
                    "message": "Stopped" + ("; announcement withdrawn" if node.announcers else ""),
                }
            )

    asyncio.run(main())


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


@contextlib.contextmanager
def _sync_bar(label: str) -> Iterator[Callable[[int, int, int], None]]:
    """Documents received of those asked for, bytes and rate, time left; terminal only."""
    if not sys.stderr.isatty():
        yield lambda *_a: None
        return
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("documents, {task.fields[bytes]}"),
        TimeRemainingColumn(),
        console=safe_console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=None, bytes="0 B")

        def update(done: int, total: int, nbytes: int) -> None:
            rate = nbytes / max(time.monotonic() - started, 1e-3)
            progress.update(
                task, completed=done, total=total, bytes=f"{_human(nbytes)} at {_human(rate)}/s"
            )

        yield update


@click.command()
@click.option(
    "--peer",
    "peers",
    multiple=True,
    metavar="HOST:PORT",
    help="Sync with this address (no mDNS needed); may repeat.",
)
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to look for peers.")
@click.option(
    "--interface", help="Address whose network to browse (default: every network interface)."
)
@json_option
@pass_ctx
def sync(
    ctx: Context, peers: tuple[str, ...], timeout: float, interface: str | None, as_json: bool
) -> None:
    """Find peers on the local network (or use --peer), sync with each, and exit."""
    given = [parse_hostport(p) for p in peers]
    if interface is not None:
        _address(interface)
    home = ctx.home
    home.identity  # noqa: B018

    async def main() -> tuple[list[dict], int]:
        targets: list[tuple[str, int, str]] = [(h, p, "given") for h, p in given]
        if not targets:
            targets = [(h, p, "remembered") for h, p in remembered(home)]
            where = [interface] if interface else _browse_on()
            found = await discovery.browse_all(
                where, timeout, discovery.own_tokens(_token_file(home))
            )
            seen = {(h, p) for h, p, _ in targets}
            targets += [(p.host, p.port, "mdns") for p in found if (p.host, p.port) not in seen]
        out = []
        reached = 0
        for host, port, source in targets:
            where_ = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            try:
                with _sync_bar(f"syncing with {where_}") as update:
                    r = await sync_with(home, host, port, progress=update)
            except NoSharedCommunity as exc:
                reached += 1
                out.append(
                    {
                        "peer": where_,
                        "ok": False,
                        "shared": False,
                        "source": source,
                        "error": str(exc),
                    }
                )
                continue
            except SameIdentity:
                continue  # our own serve, announced under a token newer than we read
            except P2PError as exc:
                if source == "remembered" and isinstance(exc, PeerUnreachable):
                    continue  # an old address; not an error
                reached += 1
                out.append({"peer": where_, "ok": False, "source": source, "error": str(exc)})
                continue
            reached += 1
            remember(home, r.peer, host, port)
            out.append(
                {"peer": where_, "ok": True, "source": source, **r.as_json(), "summary": summary(r)}
            )
        return out, reached

    results, reached = asyncio.run(main())
    if not reached:
        raise NoPeerFound()
    failure: P2PError | None = None
    rejected = sum(len(r["rejected"]) for r in results if r["ok"])
    if rejected:
        failure = P2PError(
            f"{plural(rejected, 'change')} received {'was' if rejected == 1 else 'were'} "
            "rejected (forged or not allowed); "
            "nothing of them was kept"
        )
    elif all(r.get("shared") is False for r in results):
        failure = NoSharedCommunity(
            f"found {plural(len(results), 'peer')}, but none shares a community with you"
        )
    if as_json:
        if failure is not None:  # one JSON document: the error, with every peer's outcome
            failure.fields["peers"] = results
            raise failure
        emit_json(results)
    else:
        for r in results:
            if r["ok"]:
                console.print(f"{r['peer']}: {r['summary']}", markup=False)
                for x in r["rejected"]:
                    what = (x["change"] or "record")[:12]
                    console.print(f"  rejected {what}: {x['reason']}", markup=False)
                for line in r.get("forks", []):
                    console.print(f"  {line}", markup=False)
                for why in r["attachments"]["refused"][:20]:
                    console.print(f"  attachment refused: {why}", markup=False)
            elif r.get("shared") is False:
                console.print(f"{r['peer']}: shares no community with you", markup=False)
            else:
                say((f"{r['peer']}:", "red"), f" {r['error']}", err=True)
        if failure is not None:
            raise failure
    if any(not r["ok"] and r.get("shared") is not False for r in results):
        raise SystemExit(1)


@click.command()
@click.option("--timeout", default=3.0, show_default=True)
@click.option("--interface", help="Address whose network to browse.")
@click.option("--forget", is_flag=True, help="Forget the remembered addresses of past peers.")
@json_option
@pass_ctx
def peers(ctx: Context, timeout: float, interface: str | None, forget: bool, as_json: bool) -> None:
    """List peers visible on the network now, peers you synced with before, and the
    addresses `sync` tries first (those it reached peers at)."""
    home = ctx.home
    if forget:
        n = forget_addresses(home)
        if as_json:
            emit_json({"forgotten": n})
        else:
            console.print(f"Forgot {n} address{'' if n == 1 else 'es'}")
        return
    if interface is not None:
        _address(interface)
    where = [interface] if interface else _browse_on()
    visible = asyncio.run(
        discovery.browse_all(where, timeout, discovery.own_tokens(_token_file(home)))
    )
    past: list[dict[str, Any]] = [
        {"fingerprint": fingerprint(k), "name": name_of(home, k), "last_seen": seen, "via": via}
        for k, seen, via in known(home)
    ]
    addresses = [f"{h}:{p}" for h, p in remembered(home)]
    if as_json:
        emit_json(
            {
                "visible": [{"host": p.host, "port": p.port} for p in visible],
                "known": past,
                "remembered": addresses,
            }
        )
        return
    console.print(f"{plural(len(visible), 'peer')} visible now" + (":" if visible else ""))
    for p in visible:
        console.print(f"  {p.host}:{p.port}")
    console.print(f"{plural(len(past), 'known peer')}" + (":" if past else ""))
    for k in past:
        when = dt.datetime.fromtimestamp(k["last_seen"]).strftime("%Y-%m-%d %H:%M")
        name = safe.clean(k["name"]) if k["name"] else "(no name)"
        console.print(f"  {k['fingerprint']}  {name:20} {k['via']:6} {when}", markup=False)
    if addresses:
        console.print("tried first by 'p2p sync': " + ", ".join(addresses))
