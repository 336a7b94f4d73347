"""Who you are: an Ed25519 signing key and an X25519 (age) encryption key.

At rest the secret half is sealed with scrypt + ChaCha20-Poly1305 from
`cryptography` (format "p2p-sealed-v2", docs/core-model.md), whose work factor
we choose: age (pyrage) picks its own by timing the machine, which made every
unlock cost 1.4-2.9 s and 300-575 MB. Backups (`identity export`) stay age
files, so the standard `age` tool opens them; stores sealed with age by older
versions still unlock and are resealed on the next unlock. Keys are never
logged and never part of an exception message.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgpack

from p2p.errors import KeyFormatError, WrongPassphrase

if TYPE_CHECKING:
    from pyrage import x25519

# The key libraries (cryptography's Rust bindings, pyrage) are imported where keys are
# used: `fingerprint` alone is needed by every view, and importing them costs ~10 ms.

BACKUP_KIND = "p2p-identity-v1"


def fingerprint(public_key: bytes) -> str:
    """A short, speakable name for a key: 16 base32 characters in groups of 4."""
    digest = hashlib.sha256(b"p2p/fingerprint/v1\x00" + public_key).digest()
    text = base64.b32encode(digest[:10]).decode("ascii")
    return "-".join(text[i : i + 4] for i in range(0, 16, 4))


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Check an Ed25519 signature; False for any malformed input."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class PublicIdentity:
    public_key: bytes
    age_recipient: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


class Identity:
    """An unlocked identity: can sign and decrypt."""

    def __init__(self, signing_seed: bytes, age_secret: str) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from pyrage import x25519

        self._key = Ed25519PrivateKey.from_private_bytes(signing_seed)
        self._age = x25519.Identity.from_str(age_secret)
        self.public_key: bytes = self._key.public_key().public_bytes_raw()
        self.age_recipient: str = str(self._age.to_public())

    def __repr__(self) -> str:  # never show secrets
        return f"Identity({self.fingerprint})"

    @classmethod
    def generate(cls) -> Identity:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from pyrage import x25519

        seed = Ed25519PrivateKey.generate().private_bytes_raw()
        return cls(seed, str(x25519.Identity.generate()))

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    @property
    def public(self) -> PublicIdentity:
        return PublicIdentity(self.public_key, self.age_recipient)

    @property
    def age_identity(self) -> x25519.Identity:
        return self._age

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def secret_bytes(self) -> bytes:
        """The secrets as msgpack, for sealing; callers must not keep or log it."""
        seed = self._key.private_bytes_raw()
        return msgpack.packb({"kind": BACKUP_KIND, "ed25519": seed, "age": str(self._age)})

    @classmethod
    def from_secret_bytes(cls, data: bytes) -> Identity:
        try:
            obj = msgpack.unpackb(data, max_bin_len=64, max_str_len=256, max_map_len=8)
            if obj.get("kind") != BACKUP_KIND:
                raise KeyFormatError()
            return cls(obj["ed25519"], obj["age"])
        except KeyFormatError:
            raise
        except Exception as exc:
            raise KeyFormatError() from exc


# --- sealing at rest ------------------------------------------------------------

SEALED_V2 = b"p2p-sealed-v2\n"
AGE_MAGIC = b"age-encryption.org/v1\n"
# scrypt N = 2^16, r = 8, p = 1: 64 MiB and ~0.35 s here, < 0.5 s on one core shared
# with a busy process (docs/threat-model.md, "Work factor").
SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P = 16, 8, 1
_HEADER = struct.Struct(">16sBBB12s")  # salt, log2 N, r, p, nonce
MAX_LOG_N, MAX_R, MAX_P = 20, 16, 4  # refuse sealed blobs that would cost more than 2 GiB


# scrypt, ChaCha20-Poly1305 and age passphrases are imported where they are used:
# only sealing and unsealing a protected key need them, not every command start.


def _kdf(passphrase: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=1 << log_n, r=r, p=p).derive(passphrase.encode())


def seal(identity: Identity, passphrase: str | None) -> bytes:
    """The at-rest form: p2p-sealed-v2 when a passphrase is given, else plain msgpack."""
    secret = identity.secret_bytes()
    if passphrase is None:
        return secret
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    salt, nonce = os.urandom(16), os.urandom(12)
    header = SEALED_V2 + _HEADER.pack(salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P, nonce)
    key = _kdf(passphrase, salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P)
    return header + ChaCha20Poly1305(key).encrypt(nonce, secret, header)


def backup(identity: Identity, passphrase: str) -> bytes:
    """A backup file: age with a scrypt passphrase, so `age -d` opens it anywhere."""
    import pyrage

    return pyrage.passphrase.encrypt(identity.secret_bytes(), passphrase)


def is_sealed(blob: bytes) -> bool:
    return blob.startswith(SEALED_V2) or blob.startswith(AGE_MAGIC)


def needs_reseal(blob: bytes) -> bool:
    """Sealed with age by an older version: reseal with our own work factor."""
    return blob.startswith(AGE_MAGIC)


def unseal(blob: bytes, passphrase: str | None) -> Identity:
    if not is_sealed(blob):
        return Identity.from_secret_bytes(blob)
    if passphrase is None:
        raise WrongPassphrase("this identity is protected by a passphrase; none was given")
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    if blob.startswith(AGE_MAGIC):
        import pyrage

        try:
            secret = pyrage.passphrase.decrypt(blob, passphrase)
        except Exception as exc:
            raise WrongPassphrase() from exc
        return Identity.from_secret_bytes(secret)
    split = len(SEALED_V2) + _HEADER.size
    if len(blob) < split + 16:
        raise KeyFormatError()
    salt, log_n, r, p, nonce = _HEADER.unpack(blob[len(SEALED_V2) : split])
    if not (1 <= log_n <= MAX_LOG_N and 1 <= r <= MAX_R and 1 <= p <= MAX_P):
        raise KeyFormatError()
    try:
        secret = ChaCha20Poly1305(_kdf(passphrase, salt, log_n, r, p)).decrypt(
            nonce, blob[split:], blob[:split]
        )
    except InvalidTag as exc:
        raise WrongPassphrase() from exc
    return Identity.from_secret_bytes(secret)
