"""A bundle's name: the digest of its file's bytes (docs/bundle-format.md §5).

Its own module so that naming a bundle (`export --since`, a stick's listing)
does not import the importer and the acceptance code behind it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import blake3

from p2p.errors import NotABundle


def file_digest(paths: list[Path], algorithm: str = "blake3") -> bytes:
    """A bundle's name: the BLAKE3 of its file's bytes (of its parts' in name
    order), which anyone holding the file can compute, key or not
    (docs/bundle-format.md §5). `algorithm="sha256"`: the name p2p gave it before
    container version 2 (`legacy_digest`)."""
    h: Any = blake3.blake3() if algorithm == "blake3" else hashlib.new(algorithm)
    for p in sorted(paths):
        if not p.is_file():
            raise NotABundle(f"{p} is not a file, so not a bundle")
        with p.open("rb") as fh:
            while block := fh.read(4 << 20):
                h.update(block)
    return bytes(h.digest())


def legacy_digest(paths: list[Path]) -> bytes:
    """The SHA-256 a version of p2p before container version 2 named this file by
    (rows it wrote are keyed by it)."""
    return file_digest(paths, "sha256")
