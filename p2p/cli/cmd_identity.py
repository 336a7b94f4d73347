"""`p2p init`, `p2p whoami`, `p2p identity export|import`."""

from __future__ import annotations

from pathlib import Path

import click

from p2p import atomic
from p2p import community as cm
from p2p.cli.context import Context, ask_passphrase, console, emit_json, json_option, pass_ctx, warn
from p2p.errors import IdentityExists


@click.command()
@click.option("--no-passphrase", is_flag=True, help="Store the private keys unencrypted.")
@click.option("--name", help="Your display name, shown next to your posts.")
@json_option
@pass_ctx
def init(ctx: Context, no_passphrase: bool, name: str | None, as_json: bool) -> None:
    """Create your identity (signing and encryption keys)."""
    home = ctx.home
    if home.has_identity():
        raise IdentityExists()
    phrase = None if no_passphrase else ask_passphrase(True)
    if not no_passphrase and not phrase:
        raise click.UsageError("an empty passphrase is not allowed; use --no-passphrase instead")
    identity = home.create_identity(phrase)
    if name:
        cm.set_profile(home, name, None)
    if no_passphrase:
        warn("your private keys are stored UNENCRYPTED; anyone with this device can post as you")
    if as_json:
        emit_json(_whoami(ctx))
        return
    console.print(f"Created identity [bold]{identity.fingerprint}[/] in {home.path}")


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
        "home": str(home.path),
    }


@click.command()
@json_option
@pass_ctx
def whoami(ctx: Context, as_json: bool) -> None:
    """Show your identity."""
    info = _whoami(ctx)
    if as_json:
        emit_json(info)
        return
    console.print(f"[bold]{info['name'] or '(no name set)'}[/]  {info['fingerprint']}")
    console.print(f"public key    {info['public_key']}")
    console.print(f"age recipient {info['age_recipient']}")
    console.print(f"keys          {'passphrase-protected' if info['protected'] else 'UNENCRYPTED'}")
    console.print(f"home          {info['home']}")


@click.group()
def identity() -> None:
    """Back up and restore your identity."""


@identity.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@pass_ctx
def identity_export(ctx: Context, file: Path, as_json: bool) -> None:
    """Write an encrypted backup of your keys (age, passphrase) to FILE."""
    home = ctx.home
    home.identity  # unlock first, with the current passphrase  # noqa: B018
    phrase = ask_passphrase(True) if not home.is_protected() else home_passphrase()
    if not phrase:
        raise click.UsageError("a backup needs a passphrase")
    atomic.write_bytes(file, home.export_identity(phrase))
    if as_json:
        emit_json({"file": str(file), "fingerprint": home.public_identity().fingerprint})
        return
    console.print(f"Wrote an encrypted backup of {home.public_identity().fingerprint} to {file}")
    console.print("Keep it safe: with its passphrase it lets anyone post as you.")


def home_passphrase() -> str | None:
    return ask_passphrase(False)


@identity.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@pass_ctx
def identity_import(ctx: Context, file: Path, as_json: bool) -> None:
    """Restore an identity from a backup FILE (kept under the backup's passphrase)."""
    data = file.read_bytes()[: 1024 * 1024]
    restored = ctx.home.import_identity(data, ask_passphrase(False))
    if as_json:
        emit_json(_whoami(ctx))
        return
    console.print(f"Restored identity [bold]{restored.fingerprint}[/]")
    warn("do not use one identity on two devices at the same time (their edits would collide)")


def register(cli: click.Group) -> None:
    cli.add_command(init)
    cli.add_command(whoami)
    cli.add_command(identity)
