"""The age envelope around bundles of private communities (pyrage).

A private community's bundle is encrypted as a whole to that community's age
X25519 recipient, so nothing in it (not even which community) is readable
without the key; `age -d -i key.txt FILE` opens it too. age does not allow a
passphrase stanza beside other recipients, so a passphrase bundle is a
separate mode (and, through pyrage's API, is handled in memory).
"""

from __future__ import annotations

from typing import BinaryIO

import pyrage
from pyrage import x25519

from p2p.errors import BundleCorrupt, P2PError, WrongKey

AGE_MAGIC = b"age-encryption.org/v1\n"
MAX_PASSPHRASE_BUNDLE = 1024**3


def is_encrypted(head: bytes) -> bool:
    return head.startswith(AGE_MAGIC)


def is_passphrase(head: bytes) -> bool:
    """An age file whose (only) stanza is scrypt: it opens with a passphrase."""
    return is_encrypted(head) and head[len(AGE_MAGIC) :].startswith(b"-> scrypt ")


def opens(head: bytes, identities: list[x25519.Identity]) -> bool:
    """Whether one of `identities` unwraps the file key of the age file starting
    with `head` (its header and nonce): age itself checks, on the header only."""
    mac = head.find(b"\n--- ")
    eol = head.find(b"\n", mac + 1) if mac >= 0 else -1
    if eol < 0 or not identities:
        return False
    try:
        pyrage.decrypt(head[: eol + 1 + 16], identities)
    except pyrage.DecryptError as exc:
        return "no matching keys" not in str(exc).lower()
    return True


def check_sample(sample: bytes, secrets: list[str]) -> None:
    """pyrage must open `sample` (an empty age file from our own writer, with the
    header a bundle is about to get) to nothing, with one of the community's
    `secrets`: else that writer is wrong, and no bundle is written with it."""
    try:
        ok = pyrage.decrypt(sample, [x25519.Identity.from_str(s) for s in secrets]) == b""
    except pyrage.DecryptError:
        ok = False
    if not ok:
        raise P2PError(
            "p2p's age writer disagrees with pyrage; nothing was exported (a bug: please report it)"
        )


def decrypt_error(exc: Exception) -> Exception:
    """Our error for what age said (pyrage's exception, or the CLI's message)."""
    text = str(exc).lower()
    if "no matching keys" in text or "no identity matched" in text:
        return WrongKey()
    if "passphrase" in text or "decryption failed" in text and "header" in text:
        return WrongKey("the passphrase does not open this bundle")
    return damaged()


def damaged() -> BundleCorrupt:
    """A damaged or cut-short envelope, whichever reader found it."""
    return BundleCorrupt("this encrypted bundle is damaged or cut short; nothing was imported")


def decrypt(src: BinaryIO, dst: BinaryIO, identities: list[x25519.Identity]) -> None:
    if not identities:
        raise WrongKey("this bundle is encrypted and you hold no key for it")
    try:
        pyrage.decrypt_io(src, dst, identities)
    except pyrage.DecryptError as exc:
        raise decrypt_error(exc) from exc
    except OSError as exc:  # pyrage's streaming reader says "decryption error" so
        if "decryption" not in str(exc).lower():
            raise
        raise decrypt_error(exc) from exc


def encrypt_passphrase(src: BinaryIO, dst: BinaryIO, passphrase: str) -> None:
    data = src.read(MAX_PASSPHRASE_BUNDLE + 1)
    if len(data) > MAX_PASSPHRASE_BUNDLE:
        raise ValueError("passphrase bundles are limited to 1 GiB; use a private community")
    dst.write(pyrage.passphrase.encrypt(data, passphrase))


def decrypt_passphrase(src: BinaryIO, dst: BinaryIO, passphrase: str) -> None:
    data = src.read(MAX_PASSPHRASE_BUNDLE + 1)
    if len(data) > MAX_PASSPHRASE_BUNDLE:
        raise BundleCorrupt("this passphrase bundle is larger than any p2p writes")
    try:
        dst.write(pyrage.passphrase.decrypt(data, passphrase))
    except pyrage.DecryptError as exc:
        # the scrypt stanza failing to unwrap the file key is age's "Decryption failed"
        if str(exc).strip().lower() == "decryption failed":
            raise WrongKey("the passphrase does not open this bundle") from exc
        raise decrypt_error(exc) from exc
