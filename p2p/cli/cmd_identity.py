"""`p2p init`, `p2p whoami`, `p2p identity export|import`."""

from __future__ import annotations

from pathlib import Path

import click

from p2p import atomic
from p2p.cli import safe
from p2p.cli.context import (
    Context,
    ask_passphrase,
    console,
    emit_json,
    force_option,
    json_option,
    pass_ctx,
    warn,
)
from p2p.errors import IdentityExists
from p2p.home import Home
from p2p.home import exists as home_exists


@click.command()
@click.option("--no-passphrase", is_flag=True, help="Store the private keys unencrypted.")
@click.option("--name", help="Your display name, shown next to your posts.")
@json_option
@pass_ctx
def init(ctx: Context, no_passphrase: bool, name: str | None, as_json: bool) -> None:
    """Create your identity (signing and encryption keys)."""
    if home_exists(ctx.home_path) and ctx.home.has_identity():
        raise IdentityExists()
    phrase = None if no_passphrase else ask_passphrase(True)
    if not no_passphrase and not phrase:
        raise click.UsageError("an empty passphrase is not allowed; use --no-passphrase instead")
    home = ctx.new_home()
    identity = home.create_identity(phrase)
    if name:
        from p2p import community as cm

        cm.set_profile(home, name, None)
    if no_passphrase:
        warn("your private keys are stored UNENCRYPTED; anyone with this device can post as you")
    if as_json:
        emit_json(_whoami(ctx))
        return
    click.echo(f"Created identity {click.style(identity.fingerprint, bold=True)} in {home.path}")


def _whoami(ctx: Context) -> dict:
    home = ctx.home
    pub = home.public_identity()
    profile = home.meta("profile") or {}
    assert isinstance(profile, dict)
    return {
        "fingerprint": pub.fingerprint,
        "public_key": pub.public_key.hex(),
        "age_recipient": pub.age_recipient,
        "name": profile.get("name"),
        "bio": profile.get("bio"),
        "protected": home.is_protected(),
        "unlocked_until": _unlocked_until(home),
        "home": str(home.path),
    }


def _keys_line(info: dict) -> str:
    if not info["protected"]:
        return "UNENCRYPTED"
    if info["unlocked_until"] is None:
        return "passphrase-protected"
    import time

    until = time.strftime("%H:%M", time.localtime(info["unlocked_until"]))
    return f"passphrase-protected, unlocked until {until} at the latest ('p2p lock' ends it)"


def _unlocked_until(home: Home) -> float | None:
    """When the unlock agent of this home locks again at the latest (None: locked)."""
    if not home.is_protected():
        return None  # and no need to import the agent client
    from p2p import agent

    running = agent.status(home.path)
    if running is None or running.public_key != home.public_identity().public_key:
        return None
    return running.expires


@click.command()
@json_option
@pass_ctx
def whoami(ctx: Context, as_json: bool) -> None:
    """Show your identity."""
    info = _whoami(ctx)
    if as_json:
        emit_json(info)
        return
    name = safe.clean(info["name"]) if info["name"] else "(no name set)"
    lines = [
        f"{click.style(name, bold=True)}  {info['fingerprint']}",
        f"public key    {info['public_key']}",
        f"age recipient {info['age_recipient']}",
        f"keys          {_keys_line(info)}",
        f"home          {info['home']}",
    ]
    click.echo("\n".join(lines))  # plain click, not rich: whoami must start fast


@click.group()
def identity() -> None:
    """Back up and restore your identity."""


@identity.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@force_option
@json_option
@pass_ctx
def identity_export(ctx: Context, file: Path, force: bool, as_json: bool) -> None:
    """Write an encrypted backup of your keys (age, passphrase) to FILE."""
    atomic.check_destination(file, force)
    home = ctx.home
    home.identity  # unlock first, with the current passphrase  # noqa: B018
    phrase = ask_passphrase(True) if not home.is_protected() else home_passphrase()
    if not phrase:
        raise click.UsageError("a backup needs a passphrase")
    atomic.write_bytes(file, home.export_identity(phrase), force=force)
    if as_json:
        emit_json({"file": str(file), "fingerprint": home.public_identity().fingerprint})
        return
    console.print(f"Wrote an encrypted backup of {home.public_identity().fingerprint} to {file}")
    console.print("Keep it safe: with its passphrase it lets anyone post as you.")


def home_passphrase() -> str | None:
    return ask_passphrase(False)


# Until devices have keys of their own, two devices writing as one identity fork
# its history (docs/core-model.md, forks): say so at the moment it can happen.
RESTORED_WARNING = (
    "Before you write anything with this identity, sync with a peer or import a bundle"
    " holding everything your previous device wrote. If both devices write from the same"
    " point, the community keeps only one version (the same on every device) and the other"
    " device's posts from that point on are set aside for everyone. Never use one identity"
    " on two devices at the same time."
)


@identity.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@pass_ctx
def identity_import(ctx: Context, file: Path, as_json: bool) -> None:
    """Restore an identity from a backup FILE (kept under the backup's passphrase)."""
    with file.open("rb") as fh:
        data = fh.read(1024 * 1024)
    if home_exists(ctx.home_path) and ctx.home.has_identity():
        raise IdentityExists()
    home = ctx.adopt(Home.restore(ctx.home_path, data, ask_passphrase(False), ask_passphrase))
    if as_json:
        emit_json({**_whoami(ctx), "warning": RESTORED_WARNING})
        return
    fp = home.public_identity().fingerprint
    click.echo(f"Restored identity {click.style(fp, bold=True)}")
    warn(RESTORED_WARNING)
