"""`p2p unlock [--for DURATION]` and `p2p lock`: one passphrase per session."""

from __future__ import annotations

import re
import time

import click

from p2p.cli.context import Context, console, emit_json, json_option, pass_ctx

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90s', '15m', '8h', '1d', '1h30m' or plain seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+", text):
        return float(text)
    parts = re.findall(r"(\d+)\s*([smhd])", text)
    if not parts or re.sub(r"(\d+)\s*([smhd])", "", text).strip():
        raise click.BadParameter(f"{text!r} is not a duration (examples: 90s, 15m, 8h, 1d)")
    return float(sum(int(n) * _UNITS[u] for n, u in parts))


def _human(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


@click.command()
@click.option(
    "--for",
    "lifetime",
    default="8h",
    show_default=True,
    help="Lock again after this long at the latest (90s, 15m, 8h, 1d; at most 7d).",
)
@click.option(
    "--idle",
    default="15m",
    show_default=True,
    help="Lock again after this long without any command using the key.",
)
@json_option
@pass_ctx
def unlock(ctx: Context, lifetime: str, idle: str, as_json: bool) -> None:
    """Unlock your identity once for this session (a small agent keeps it in memory)."""
    from p2p import agent

    seconds, idle_s = parse_duration(lifetime), parse_duration(idle)
    home = ctx.home
    pub = home.public_identity()
    running = agent.status(home.path)
    if running is not None and running.public_key == pub.public_key:
        state, until, idle_s = "already unlocked", running.expires, running.idle
    elif not home.is_protected():
        state, until = "not protected", None
    else:
        identity = home.unlock_with_passphrase()
        status = agent.start(
            home.path, identity.public_key, identity.secret_bytes(), seconds, min(idle_s, seconds)
        )
        state, until = "unlocked", status.expires
        idle_s = status.idle
    if as_json:
        emit_json({"state": state, "fingerprint": pub.fingerprint, "expires": until})
        return
    if until is None:
        console.print("Your keys are not passphrase-protected: nothing to unlock.")
        return
    at = time.strftime("%H:%M", time.localtime(until))
    console.print(
        f"{'Already unlocked' if state != 'unlocked' else 'Unlocked'} {pub.fingerprint}"
        f" until {at} at the latest, or after {_human(idle_s)} unused. 'p2p lock' ends it now."
    )


@click.command()
@json_option
@pass_ctx
def lock(ctx: Context, as_json: bool) -> None:
    """Forget the unlocked identity now (ends the unlock agent)."""
    from p2p import agent

    was = agent.lock(ctx.home_path)
    if as_json:
        emit_json({"locked": True, "was_unlocked": was})
        return
    console.print("Locked." if was else "Nothing was unlocked.")
