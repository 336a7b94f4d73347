"""Which keys may open the bundles a command is given: the home's community and
identity keys, plus a bundle passphrase, asked only when a bundle is sealed
with one."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from p2p.bundle.importer import keys_for
from p2p.bundle.source import Keys, needs_passphrase
from p2p.cli.context import Context, ask_passphrase
from p2p.errors import P2PError

PASSPHRASE_ENV = "P2P_BUNDLE_PASSPHRASE"


def for_import(ctx: Context, files: Iterable[Path]) -> Keys:
    return _with_passphrase(keys_for(ctx.home), files)


def for_reading(ctx: Context, files: Iterable[Path]) -> Keys:
    """Our keys if this home has an identity; verifying works without any."""
    keys = Keys()
    if (ctx.home_path / "p2p.db").exists() and ctx.home.has_identity():
        try:
            keys = keys_for(ctx.home)
        except P2PError:  # a locked identity still verifies open bundles
            keys = Keys()
    return _with_passphrase(keys, files)


def _with_passphrase(keys: Keys, files: Iterable[Path]) -> Keys:
    if any(_sealed(f) for f in files):
        keys.passphrase = ask_passphrase(False, PASSPHRASE_ENV, "bundle passphrase")
    return keys


def _sealed(path: Path) -> bool:
    try:
        return needs_passphrase(path)
    except (P2PError, OSError):
        return False  # opening it reports the real problem
