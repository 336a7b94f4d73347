"""p2p's own age writer (p2p/bundle/agewrite.py) against the maintained readers:
pyrage (what p2p decrypts with) and the age CLI. Every file it writes, however
the plaintext is cut into writes, must open to the same bytes; a recipient that
is not one is refused; and the export refuses to write with a writer pyrage
disagrees with."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pyrage
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyrage import x25519

from p2p.bundle import agewrite, crypt
from p2p.errors import P2PError

BLOCK = agewrite.BLOCK
IDENTITY = x25519.Identity.generate()
RECIPIENT = str(IDENTITY.to_public())


class Collect:
    """A sink that copies what it is handed (the writer reuses its buffer)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()

    def write(self, data: bytes) -> int:
        return self.buf.write(bytes(data))


def encrypt(data: bytes, cuts: list[int]) -> bytes:
    out = Collect()
    w = agewrite.AgeWriter(out, RECIPIENT)
    pos = 0
    for n in cuts:
        w.write(data[pos : pos + n])
        pos += n
    w.write(data[pos:])
    w.close()
    return out.buf.getvalue()


# sizes around the block and batch boundaries, where a writer goes wrong
EDGES = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK, 16 * BLOCK, 16 * BLOCK + 1, 17 * BLOCK]


@pytest.mark.parametrize("size", EDGES)
def test_pyrage_opens_every_edge_size(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    sealed = encrypt(data, [])
    assert pyrage.decrypt(sealed, [IDENTITY]) == data
    # age's payload: 16 nonce bytes, then one tag per block (an empty last block
    # only when there is nothing at all)
    blocks = max(1, -(-size // BLOCK))
    assert len(sealed) - sealed.index(b"\n", sealed.index(b"--- ")) - 1 == 16 + size + 16 * blocks


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(0, 5 * BLOCK + 7),
    cuts=st.lists(st.integers(0, 2 * BLOCK + 3), max_size=12),
)
def test_any_cutting_of_the_plaintext_opens_the_same(size: int, cuts: list[int]) -> None:
    data = bytes((i * 7 + 3) % 251 for i in range(size))
    assert pyrage.decrypt(encrypt(data, cuts), [IDENTITY]) == data


def test_two_encryptions_differ_and_other_keys_do_not_open() -> None:
    a, b = encrypt(b"same words", []), encrypt(b"same words", [])
    assert a != b  # a fresh file key, ephemeral share and nonce each time
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(a, [x25519.Identity.generate()])


def test_a_changed_byte_anywhere_fails_to_open() -> None:
    sealed = encrypt(bytes(3 * BLOCK), [])
    for at in (30, len(sealed) // 2, len(sealed) - 1):
        bad = bytearray(sealed)
        bad[at] ^= 1
        with pytest.raises(pyrage.DecryptError):
            pyrage.decrypt(bytes(bad), [IDENTITY])


def test_the_age_cli_opens_it(tmp_path: Path) -> None:
    if not shutil.which("age"):
        pytest.skip("the age command-line tool is not installed (apt-get install age)")
    data = bytes(range(256)) * 1000 + b"end"
    (tmp_path / "f.age").write_bytes(encrypt(data, [100, BLOCK]))
    (tmp_path / "k.txt").write_text(str(IDENTITY) + "\n")
    out = subprocess.run(
        ["age", "-d", "-i", str(tmp_path / "k.txt"), str(tmp_path / "f.age")],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    assert out == data


def test_recipient_key_reads_what_pyrage_writes_and_nothing_else() -> None:
    for _ in range(20):
        r = str(x25519.Identity.generate().to_public())
        assert len(agewrite.recipient_key(r)) == 32
        assert agewrite.recipient_key(r.upper()) == agewrite.recipient_key(r)
    r = RECIPIENT
    flipped = r[:-1] + ("q" if r[-1] != "q" else "p")
    bad = [
        flipped,  # checksum
        r[:-2],  # cut short
        "age2" + r[4:],  # another human-readable part
        r[:10] + r[10:].upper(),  # mixed case
        r[:20] + "b" + r[21:],  # a character Bech32 does not use
        "",
        "age1",
        str(IDENTITY),  # a secret key is not a recipient
    ]
    for text in bad:
        with pytest.raises(ValueError):
            agewrite.recipient_key(text)


def test_export_refuses_a_writer_pyrage_disagrees_with() -> None:
    w = agewrite.AgeWriter(Collect(), RECIPIENT)
    crypt.check_sample(w.sample(), [str(IDENTITY)])  # agrees: nothing raised
    bad = bytearray(w.sample())
    bad[-1] ^= 1
    with pytest.raises(P2PError, match="disagrees"):
        crypt.check_sample(bytes(bad), [str(IDENTITY)])
    with pytest.raises(P2PError, match="disagrees"):
        crypt.check_sample(w.sample(), [str(x25519.Identity.generate())])
