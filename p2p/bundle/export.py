"""Writing bundles: everything a peer lacks, one file per encryption domain.

Open communities share one plain bundle; each private community gets its own
file encrypted to that community's age recipient, so a member of one private
community can never open another's. Files are built in a private scratch
folder and only then moved into place (atomically), so an interrupted export
leaves nothing half-written behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from p2p import atomic, exchange
from p2p.blobs import exchange as blob_exchange
from p2p.bundle import crypt
from p2p.bundle.container import write_bundle
from p2p.bundle.records import community_record, inventory_records
from p2p.community import Community, all_communities
from p2p.exchange import Inventory
from p2p.home import Home

Progress = Callable[[int, int], None]  # (documents done, documents in all)


@dataclass
class Domain:
    """Communities that may share one file: all open ones, or one private one."""

    communities: list[Community]
    recipient: str | None

    @property
    def label(self) -> str:
        if self.recipient is None:
            return "open communities"
        return f"private community {self.communities[0].hex[:12]}"


def domains(communities: list[Community]) -> list[Domain]:
    open_ones = [c for c in communities if not c.private]
    out = [Domain(open_ones, None)] if open_ones else []
    out += [Domain([c], c.recipient) for c in communities if c.private]
    return out


@dataclass
class Built:
    """One bundle written to a scratch file, not yet in its final place."""

    domain: Domain
    path: Path
    records: int
    docs: int
    size: int
    encrypted: bool
    extra: dict = field(default_factory=dict)


def _records(
    home: Home,
    domain: Domain,
    peer: Inventory | list[Inventory] | None,
    progress: Progress | None,
    plan: blob_exchange.Plan | None = None,
) -> Iterator[dict]:
    ids = [c.id for c in domain.communities]
    for c in domain.communities:
        yield community_record(home, c)
    yield from inventory_records(exchange.inventory(home, ids), exchange.have_hints(home, ids))
    total = sum(len(home.docs.ids(i)) for i in ids) if progress else 0
    done = 0
    for record in exchange.records_for(home, peer, ids):
        done += 1
        if progress:
            progress(done, total)
        if plan is not None:
            plan.spend(len(record["data"]) + blob_exchange.RECORD_OVERHEAD)
        yield record
    yield from blob_exchange.records_for(home, ids, plan or blob_exchange.Plan())


def build(
    home: Home,
    domain: Domain,
    scratch: Path,
    *,
    peer: Inventory | list[Inventory] | None = None,
    passphrase: str | None = None,
    progress: Progress | None = None,
    plan: blob_exchange.Plan | None = None,
) -> Built | None:
    """Write one domain's bundle into `scratch`; None when the peer lacks nothing.
    `plan`: the attachment budget and what the reader holds (default: send all)."""
    plain = scratch / f"plain-{os.urandom(6).hex()}"
    docs = chunks = 0

    def counted() -> Iterator[dict]:
        nonlocal docs, chunks
        for r in _records(home, domain, peer, progress, plan):
            if r["t"] == "doc":
                docs += 1
            elif r["t"] == "blob-chunk":
                chunks += 1
            yield r

    with plain.open("wb") as out:
        stats = write_bundle(out, home.identity, counted(), int(time.time()))
    if peer is not None and docs == 0 and chunks == 0:
        plain.unlink()
        return None
    final = plain
    encrypted = domain.recipient is not None or passphrase is not None
    if encrypted:
        final = scratch / f"sealed-{os.urandom(6).hex()}"
        with plain.open("rb") as src, final.open("wb") as dst:
            if passphrase is not None:
                crypt.encrypt_passphrase(src, dst, passphrase)
            else:
                assert domain.recipient is not None
                crypt.encrypt(src, dst, [domain.recipient])
        plain.unlink()
    return Built(domain, final, stats.count, docs, final.stat().st_size, encrypted)


def scratch_dir(home: Home) -> tempfile.TemporaryDirectory:
    """A private folder inside the home (same disk as the store, never the stick)."""
    base = home.path / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    return tempfile.TemporaryDirectory(dir=base)


def select(home: Home, wanted: list[Community] | None) -> list[Community]:
    return wanted if wanted else all_communities(home)


def place(built: Built, dest: Path) -> Path:
    """Move a built bundle to `dest` atomically (temporary name, fsync, rename)."""

    def fill(out: BinaryIO) -> None:
        with built.path.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)

    return atomic.write_file(dest, fill)
