"""Which keys may open the bundles a command is given: the home's community
keys; the identity key only when a bundle is encrypted to recipients none of
the community keys is (unlocking costs a passphrase and a scrypt derivation,
so a plain bundle or a community's bundle never unlocks it); and a bundle
passphrase, asked only when a bundle is sealed with one."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from p2p.bundle import crypt
from p2p.bundle.importer import keys_for
from p2p.bundle.source import Keys, needs_passphrase, payload_head
from p2p.cli.context import Context, ask_passphrase
from p2p.errors import P2PError

PASSPHRASE_ENV = "P2P_BUNDLE_PASSPHRASE"
AGE_HEADER_MAX = 64 * 1024  # an age header with a few stanzas is a few hundred bytes


def for_import(ctx: Context, files: Iterable[Path]) -> Keys:
    files = list(files)
    keys = keys_for(ctx.home, identity=False)
    if ctx.home.has_identity() and any(_needs_identity(f, keys) for f in files):
        keys.identities.append(ctx.home.identity.age_identity)
    return _with_passphrase(keys, files)


def for_reading(ctx: Context, files: Iterable[Path]) -> Keys:
    """Our keys if this home has an identity; verifying works without any."""
    files = list(files)
    keys = Keys()
    if (ctx.home_path / "p2p.db").exists() and ctx.home.has_identity():
        try:
            keys = for_import(ctx, [f for f in files if not _sealed(f)])
        except P2PError:  # a locked identity still verifies open bundles
            keys = keys_for(ctx.home, identity=False)
    return _with_passphrase(keys, files)


def _needs_identity(path: Path, keys: Keys) -> bool:
    """An age bundle (not passphrase-sealed) that no community key opens."""
    try:
        head = payload_head(path, AGE_HEADER_MAX)
    except (P2PError, OSError):
        return False  # opening it reports the real problem
    if not crypt.is_encrypted(head) or crypt.is_passphrase(head):
        return False
    return not crypt.opens(head, keys.identities)


def _with_passphrase(keys: Keys, files: Iterable[Path]) -> Keys:
    if any(_sealed(f) for f in files):
        keys.passphrase = ask_passphrase(False, PASSPHRASE_ENV, "bundle passphrase")
    return keys


def _sealed(path: Path) -> bool:
    try:
        return needs_passphrase(path)
    except (P2PError, OSError):
        return False  # opening it reports the real problem
