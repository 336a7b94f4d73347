"""age v1 encryption to one X25519 recipient, written as a stream at disk speed.

Why not pyrage here: pyrage (which still writes the passphrase bundles, and
opens whatever p2p/bundle/ageread.py hands back) pulls its plaintext through
Python 8 KiB at a time and holds the GIL while it encrypts: 1.2 s of one core
per GiB, the critical path of exporting a private community's film. This
writer takes the container's own buffers and seals each 64 KiB block with
`cryptography`'s ChaCha20-Poly1305 (0.55 s per GiB here), exactly as
age-encryption.org/v1 specifies for an X25519 recipient. Nothing in it is new
cryptography: it is the published format on `cryptography`'s primitives, and
what it writes is read by pyrage (a sample with the same header and key at
every export, `crypt.check_sample`; whole files in the tests) and by the age
CLI (tests).
"""

from __future__ import annotations

import base64
import os
from typing import Protocol

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from p2p.blobs.seal import nonce

MAGIC = b"age-encryption.org/v1\n"
BLOCK = 64 * 1024  # age's STREAM chunk of plaintext
TAG = 16
X25519_INFO = b"age-encryption.org/v1/X25519"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


class Writable(Protocol):
    def write(self, data: bytes) -> int: ...


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _b64(data: bytes) -> bytes:
    """age's base64: the standard alphabet without padding."""
    return base64.b64encode(data).rstrip(b"=")


def _polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def bech32_decode(text: str, hrp: str) -> bytes:
    """The 32 bytes a Bech32 string (BIP 173, checksum verified) with the
    human-readable part `hrp` holds; ValueError for anything else."""
    text = text.strip()
    if text.lower() != text and text.upper() != text:
        raise ValueError("Bech32 is not of mixed case")
    text = text.lower()
    got, sep, rest = text.rpartition("1")
    if got != hrp or not sep or len(rest) < 6 or any(c not in _BECH32 for c in rest):
        raise ValueError(f"not a Bech32 string of {hrp!r}")
    data = [_BECH32.index(c) for c in rest]
    if _polymod([ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + data) != 1:
        raise ValueError("a Bech32 checksum is wrong")
    acc = bits = 0
    out = bytearray()
    for v in data[:-6]:
        acc = acc << 5 | v
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append(acc >> bits & 0xFF)
    if bits >= 5 or acc & ((1 << bits) - 1) or len(out) != 32:
        raise ValueError("an age key holds 32 bytes")
    return bytes(out)


def recipient_key(recipient: str) -> bytes:
    """The 32-byte X25519 public key of an `age1...` recipient; ValueError otherwise."""
    return bech32_decode(recipient, "age")


def header(recipient: str, file_key: bytes) -> bytes:
    """The age header wrapping `file_key` to `recipient`, MAC line included."""
    theirs = recipient_key(recipient)
    ephemeral = X25519PrivateKey.generate()
    share = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(theirs))  # refuses all-zero
    wrap = hkdf(shared, share + theirs, X25519_INFO)
    body = ChaCha20Poly1305(wrap).encrypt(bytes(12), file_key, None)
    # a body of 32 bytes is 43 base64 characters: one line, shorter than 64 columns
    text = MAGIC + b"-> X25519 " + _b64(share) + b"\n" + _b64(body) + b"\n---"
    mac = hmac.HMAC(hkdf(file_key, b"", b"header"), hashes.SHA256())
    mac.update(text)
    return text + b" " + _b64(mac.finalize()) + b"\n"


class AgeWriter:
    """A write-only stream that writes the age encryption of what it is given to
    `out`: the header at once, then each 64 KiB block once the next byte shows
    it is not the last; `close()` seals the last (flagged) block.

    Blocks are sealed from the caller's buffer into one reused buffer of BATCH
    blocks, handed to `out.write` as a memoryview: `out` must be done with it
    when `write` returns (copy it, hash it, write it), never keep it."""

    BATCH = 16  # blocks sealed per hand-over: a MiB

    def __init__(self, out: Writable, recipient: str) -> None:
        self.out = out
        file_key = os.urandom(16)
        payload_nonce = os.urandom(16)
        self._head = header(recipient, file_key) + payload_nonce
        out.write(self._head)
        self._aead = ChaCha20Poly1305(hkdf(file_key, payload_nonce, b"payload"))
        self._counter = 0
        self._pending = bytearray()  # the block that may be the last
        self._view = memoryview(bytearray(self.BATCH * (BLOCK + TAG)))
        self._used = 0
        self._closed = False

    def sample(self) -> bytes:
        """A whole age file of an empty plaintext under this stream's header, nonce
        and key (its one block is the last, numbered 0): for another
        implementation to read back (`crypt.check_sample`)."""
        return self._head + self._aead.encrypt(nonce(0, last=True), b"", None)

    def _seal(self, block: bytes | bytearray | memoryview, last: bool) -> None:
        if self._used + len(block) + TAG > len(self._view):
            self._hand_over()
        into = self._view[self._used : self._used + len(block) + TAG]
        self._used += self._aead.encrypt_into(nonce(self._counter, last), block, None, into)
        self._counter += 1

    def _hand_over(self) -> None:
        if self._used:
            self.out.write(self._view[: self._used])  # type: ignore[arg-type]
            self._used = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed age stream")
        view = memoryview(data).cast("B")
        n = len(view)
        if self._pending:
            take = min(BLOCK - len(self._pending), n)
            self._pending += view[:take]
            view = view[take:]
            if not view:
                return n
            self._seal(self._pending, last=False)  # full, and more follows
            self._pending.clear()
        whole = (len(view) - 1) // BLOCK if view else 0  # blocks that are surely not last
        for i in range(whole):
            self._seal(view[i * BLOCK : (i + 1) * BLOCK], last=False)
        self._pending += view[whole * BLOCK :]
        self._hand_over()
        return n

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """Seal the last block (empty only when nothing at all was written)."""
        if not self._closed:
            self._closed = True
            self._seal(self._pending, last=True)
            self._pending.clear()
            self._hand_over()
