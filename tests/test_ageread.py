"""p2p's in-process age reader (p2p/bundle/ageread.py): it opens what pyrage, the
age CLI and our own writer write, however the bytes arrive; it never accepts a
changed, cut or extended file; and whatever it does not open itself it hands
back whole (`NotForUs.head`) for the maintained reader, which then decides."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pyrage
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyrage import passphrase, x25519

from p2p.bundle import ageread, agewrite, source
from p2p.bundle.source import Keys
from p2p.errors import BundleCorrupt

BLOCK = agewrite.BLOCK
IDENTITY = x25519.Identity.generate()
RECIPIENT = IDENTITY.to_public()


class Trickle:
    """A stream that gives fewer bytes than asked, in a pattern of its own."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data, self.pos, self.sizes, self.i = data, 0, sizes or [1 << 20], 0

    def read(self, n: int = -1) -> bytes:
        size = max(1, min(n, self.sizes[self.i % len(self.sizes)]))
        self.i += 1
        out = self.data[self.pos : self.pos + size]
        self.pos += len(out)
        return out


def plain_of(src: object, reads: list[int] | None = None) -> bytes:
    r = ageread.AgeReader(src, [IDENTITY])  # type: ignore[arg-type]
    out = bytearray()
    i = 0
    while piece := r.read((reads or [1 << 20])[i % len(reads or [1])]):
        out += piece
        i += 1
    return bytes(out)


def ours(data: bytes) -> bytes:
    class Collect(io.BytesIO):
        def write(self, b) -> int:  # noqa: ANN001
            return super().write(bytes(b))

    out = Collect()
    w = agewrite.AgeWriter(out, str(RECIPIENT))
    w.write(data)
    w.close()
    return out.getvalue()


EDGES = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 16 * BLOCK, 17 * BLOCK, 17 * BLOCK + 1, 33 * BLOCK + 5]


@pytest.mark.parametrize("size", EDGES)
def test_opens_pyrage_files_and_its_own_at_every_edge(size: int) -> None:
    data = bytes((i * 13) % 256 for i in range(size))
    for sealed in (pyrage.encrypt(data, [RECIPIENT]), ours(data)):  # pyrage adds grease
        assert plain_of(io.BytesIO(sealed)) == data
        assert plain_of(Trickle(sealed, [7, 70_000, 1 << 20]), [3, BLOCK + 1, 1 << 20]) == data


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(0, 4 * BLOCK + 9),
    arrive=st.lists(st.integers(1, 3 * BLOCK), max_size=6),
    reads=st.lists(st.integers(1, 2 * BLOCK), min_size=1, max_size=6),
)
def test_any_arrival_and_any_reading_give_the_same_bytes(
    size: int, arrive: list[int], reads: list[int]
) -> None:
    data = bytes((i * 7 + 1) % 251 for i in range(size))
    assert plain_of(Trickle(ours(data), arrive), reads) == data


SMALL = pyrage.encrypt(bytes(range(256)) * 700, [RECIPIENT])  # three blocks


@settings(max_examples=150, deadline=None)
@given(
    at=st.integers(0, len(SMALL) - 1),
    how=st.sampled_from(["flip", "cut", "extend", "drop"]),
    extra=st.binary(min_size=1, max_size=40),
)
def test_a_changed_file_is_never_opened(at: int, how: str, extra: bytes) -> None:
    if how == "flip":
        bad = bytearray(SMALL)
        bad[at] ^= 1 << (at % 8)
        changed = bytes(bad)
    elif how == "cut":
        changed = SMALL[:at]
    elif how == "extend":
        changed = SMALL + extra
    else:
        changed = SMALL[:at] + SMALL[at + len(extra) :]
    try:
        got = plain_of(io.BytesIO(changed))
    except (BundleCorrupt, ageread.NotForUs):
        return
    # a flip in the header's free text (a grease stanza's argument) still fails its
    # MAC; nothing changed may ever come out as a plaintext
    pytest.fail(f"a changed file opened to {len(got)} bytes")


def test_what_it_does_not_open_is_handed_back_whole() -> None:
    cases = {
        "another key": pyrage.encrypt(b"words", [x25519.Identity.generate().to_public()]),
        "a passphrase": passphrase.encrypt(b"words", "correct horse"),
        "not age": b"P2PBNDL\n" + bytes(100),
    }
    wrong_mac = bytearray(ours(b"words"))
    mac_at = wrong_mac.index(b"\n--- ") + 6
    wrong_mac[mac_at] = ord("A") if wrong_mac[mac_at] != ord("A") else ord("B")
    cases["a wrong MAC"] = bytes(wrong_mac)
    for why, sealed in cases.items():
        with pytest.raises(ageread.NotForUs) as refused:
            ageread.AgeReader(io.BytesIO(sealed), [IDENTITY])
        assert refused.value.head == sealed[: ageread.MAX_HEADER], why


def test_the_age_cli_writes_what_it_opens(tmp_path: Path) -> None:
    if not shutil.which("age"):
        pytest.skip("the age command-line tool is not installed (apt-get install age)")
    data = bytes(range(256)) * 900
    sealed = subprocess.run(
        ["age", "-r", str(RECIPIENT)], input=data, capture_output=True, check=True, timeout=30
    ).stdout
    assert plain_of(io.BytesIO(sealed)) == data


def test_a_bundle_it_does_not_read_still_opens_through_the_maintained_reader(
    monkeypatch,  # noqa: ANN001
) -> None:
    """The hand-back is lossless: with the fast path refusing every header (a fault,
    simulated), the file is opened by the age CLI or pyrage from the same stream."""
    data = bytes(range(256)) * 5000
    sealed = ours(data)

    def refuse(head: bytes) -> None:
        raise ValueError("a header this reader does not take")

    monkeypatch.setattr(ageread, "parse_header", refuse)
    opened = source._decrypting(io.BytesIO(sealed), Keys([IDENTITY]), False)  # type: ignore[arg-type]
    try:
        assert not isinstance(opened, ageread.AgeReader)
        out = bytearray()
        while piece := opened.read(1 << 16):
            out += piece
        assert bytes(out) == data
    finally:
        opened.close()


def test_p2p_bundles_take_the_fast_path() -> None:
    opened = source._decrypting(io.BytesIO(ours(b"x" * 100)), Keys([IDENTITY]), False)  # type: ignore[arg-type]
    assert isinstance(opened, ageread.AgeReader)
    assert opened.read() == b"x" * 100
