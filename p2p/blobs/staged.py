"""A chunk set aside while a bundle is proven, before its trailer verified.

Here, not in p2p.bundle, so the store and the commands that write posts never
import the bundle code (`p2p post` starts fast)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Staged:
    """A chunk the proving pass set aside: in the record that stands for it (its
    "t", "id" and "n", and "staged" = this, instead of "data"). Never made from a
    bundle's bytes (msgpack builds no such object), so a record cannot forge one."""

    size: int
    hash: bytes  # BLAKE3 of the chunk
    path: Path | None = None  # where stage() put it (None: it wrote nothing)
