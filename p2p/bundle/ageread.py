"""age v1 decryption with an X25519 identity, read as a stream in this process.

Why: the age CLI (what p2p otherwise decrypts with) takes the ciphertext and
gives the plaintext through two pipes, 1.8 s of its own time per GiB here, the
critical path of importing a private community's film; `cryptography`'s
ChaCha20-Poly1305 opens the same blocks in 0.55 s. This is the published
format (age-encryption.org/v1) on `cryptography`'s primitives, nothing new.

It only ever says yes to what authenticates: the file key is unwrapped from an
X25519 stanza with one of our identities (an AEAD), the header's HMAC is
checked with it, and every 64 KiB block is opened with its tag, the last one
flagged. Anything it does not read exactly so (no stanza for our keys, a
passphrase stanza, a header it finds odd, a MAC that fails) is `NotForUs`: the
caller hands the whole file to the maintained reader (the age CLI or pyrage),
which opens it or says what is wrong, as before. A block that fails to open,
or a stream cut short, is `BundleCorrupt`.
"""

from __future__ import annotations

import base64
import binascii
import hmac as std_hmac
from collections.abc import Iterable
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from p2p.blobs.seal import nonce
from p2p.bundle import crypt
from p2p.bundle.agewrite import BLOCK, MAGIC, TAG, X25519_INFO, bech32_decode, hkdf
from p2p.gather import Pieces

MAX_HEADER = 64 * 1024  # p2p writes one stanza (pyrage adds one grease stanza): ~200 bytes
MAX_STANZAS = 16
CHUNK = BLOCK + TAG
BATCH = 16  # blocks of ciphertext read at once: a MiB


class NotForUs(Exception):
    """This reader does not open the file; `head` holds the bytes it took."""

    def __init__(self, head: bytes, why: str) -> None:
        super().__init__(why)
        self.head = head


def _b64(text: bytes) -> bytes:
    """age's base64: standard alphabet, no padding, canonical (ValueError otherwise)."""
    if b"=" in text or b"\r" in text:
        raise ValueError("padded or odd base64")
    raw = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    if base64.b64encode(raw).rstrip(b"=") != text:
        raise ValueError("non-canonical base64")
    return raw


def parse_header(head: bytes) -> tuple[list[tuple[list[bytes], bytes]], bytes, int, int]:
    """(stanzas as (arguments, body), MAC, length of what the MAC covers, offset
    of the payload nonce) of the age header at the start of `head`; ValueError
    for anything not exactly age v1."""
    if not head.startswith(MAGIC):
        raise ValueError("not an age v1 file")
    pos = len(MAGIC)
    stanzas: list[tuple[list[bytes], bytes]] = []
    while True:
        eol = head.find(b"\n", pos)
        if eol < 0:
            raise ValueError("header longer than this reader takes")
        line = head[pos:eol]
        if line.startswith(b"--- "):
            mac = _b64(line[4:])
            if len(mac) != 32:
                raise ValueError("malformed header MAC")
            return stanzas, mac, pos + 3, eol + 1  # the MAC covers up to "---"
        if not line.startswith(b"-> ") or len(stanzas) >= MAX_STANZAS:
            raise ValueError("malformed stanza")
        args = line[3:].split(b" ")
        if any(not a or any(c < 0x21 or c > 0x7E for c in a) for a in args):
            raise ValueError("malformed stanza arguments")
        pos = eol + 1
        body = b""
        while True:  # body lines: 64 columns each, the last one shorter
            eol = head.find(b"\n", pos)
            if eol < 0:
                raise ValueError("header longer than this reader takes")
            text = head[pos:eol]
            if len(text) > 64:
                raise ValueError("stanza body line too long")
            body += text
            pos = eol + 1
            if len(text) < 64:
                break
        stanzas.append((args, _b64(body)))


def identity_key(identity: object) -> X25519PrivateKey:
    """The X25519 private key of an age identity (`AGE-SECRET-KEY-1...`)."""
    raw = bech32_decode(str(identity), "age-secret-key-")
    return X25519PrivateKey.from_private_bytes(raw)


def file_key(stanzas: list[tuple[list[bytes], bytes]], identities: Iterable[object]) -> bytes:
    """The file key one of `identities` unwraps from an X25519 stanza; ValueError if none."""
    keys = [identity_key(i) for i in identities]
    for args, body in stanzas:
        if args[0] != b"X25519":
            continue  # another recipient type, or grease: not ours
        if len(args) != 2 or len(body) != 32:
            raise ValueError("malformed X25519 stanza")
        share = _b64(args[1])
        if len(share) != 32:
            raise ValueError("malformed X25519 stanza")
        for key in keys:
            ours = key.public_key().public_bytes_raw()
            try:
                shared = key.exchange(X25519PublicKey.from_public_bytes(share))
                wrap = hkdf(shared, share + ours, X25519_INFO)
                return ChaCha20Poly1305(wrap).decrypt(bytes(12), body, None)
            except (ValueError, InvalidTag):
                continue
    raise ValueError("no X25519 stanza opens with these identities")


class AgeReader:
    """The plaintext of the age file `src` (a stream of its bytes, read from the
    start), opened block by block as it is read (`read(n)`, like a file)."""

    def __init__(self, src: BinaryIO, identities: Iterable[object]) -> None:
        head = b""
        while len(head) < MAX_HEADER and (more := src.read(MAX_HEADER - len(head))):
            head += more
        try:
            stanzas, mac, covered, at = parse_header(head)
            key = file_key(stanzas, identities)
            if len(key) != 16:
                raise ValueError("a file key is 16 bytes")
            check = hmac.HMAC(hkdf(key, b"", b"header"), hashes.SHA256())
            check.update(head[:covered])
            if not std_hmac.compare_digest(check.finalize(), mac):
                raise ValueError("the header MAC does not match")
        except (ValueError, binascii.Error, UnicodeError) as exc:
            raise NotForUs(head, str(exc)) from None
        if len(head) < at + 16:
            raise NotForUs(head, "no payload nonce")
        self._aead = ChaCha20Poly1305(hkdf(key, head[at : at + 16], b"payload"))
        # the ciphertext as read (a block is copied only when it straddles two reads)
        self._sealed = Pieces(lambda: src.read(BATCH * CHUNK) or None, head[at + 16 :])
        self._plain = Pieces(self._open_next)
        self._counter = 0
        self._done = False

    def _open_next(self) -> bytes | None:
        """The next block opened; the last one is the one the end of the file follows."""
        if self._done:
            return None
        block = self._sealed.take(CHUNK)
        last = self._sealed.ended()
        if len(block) < TAG or (last and len(block) == TAG and self._counter):
            raise crypt.damaged()  # cut inside a tag, or an empty last block after others
        try:
            plain = self._aead.decrypt(nonce(self._counter, last), block, None)
        except InvalidTag:
            raise crypt.damaged() from None
        self._counter += 1
        self._done = last
        return plain

    def read(self, n: int = -1) -> bytes:
        return self._plain.read(n)

    def close(self) -> None:
        self._done = True
