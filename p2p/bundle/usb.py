"""The USB drop box: a folder on a stick shared by many people.

`sync` imports every bundle there that is new and opens with our keys, then
writes, per encryption domain, what the other bundles' exporters still lack
(given what our own earlier bundles on the stick already carry them). Names on
the stick are random; nothing but bundles is ever written there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from p2p import exchange
from p2p.blobs import exchange as blob_exchange
from p2p.bundle import crypt, parts, stick
from p2p.bundle.container import MAGIC
from p2p.bundle.export import Built, build, domains, scratch_dir, select
from p2p.bundle.importer import ImportResult, file_digest, import_bundle, keys_for
from p2p.bundle.source import part_set
from p2p.bundle.verify import verify_bundle
from p2p.community import Community
from p2p.errors import BundleError, WrongKey
from p2p.exchange import Inventory
from p2p.home import Home

Say = Callable[[str], None]


@dataclass
class Found:
    files: list[Path]
    digest: bytes


@dataclass
class SyncResult:
    imported: list[ImportResult] = field(default_factory=list)
    own: int = 0
    already: int = 0
    unreadable: int = 0  # encrypted for communities we are not in
    damaged: list[tuple[str, str]] = field(default_factory=list)
    written: list[tuple[list[Path], Built]] = field(default_factory=list)
    pruned: list[Path] = field(default_factory=list)


def _is_bundle_head(head: bytes) -> bool:
    return head.startswith(MAGIC) or crypt.is_encrypted(head) or parts.is_part(head)


def scan(folder: Path) -> list[Found]:
    """Bundles in `folder` (parts grouped into one), skipping temporary files."""
    found: list[Found] = []
    seen: set[Path] = set()
    for path in sorted(folder.iterdir()):
        if path in seen or path.name.startswith(".") or not path.is_file():
            continue
        with path.open("rb") as fh:
            head = fh.read(64)
        if not _is_bundle_head(head):
            continue
        files = part_set(path) if parts.is_part(head) else [path]
        seen.update(files)
        found.append(Found(files, file_digest(files)))
    return found


def _written(home: Home, folder: Path) -> list[tuple[list[str], bytes, str, bool, Inventory]]:
    rows = home.store.db.execute(
        "SELECT name, sha256, domain, complete, inventory FROM bundles_written WHERE dir = ?"
        " ORDER BY at",
        (str(folder.resolve()),),
    )
    return [
        (json.loads(name), digest, domain, bool(complete), _inv(inv))
        for name, digest, domain, complete, inv in rows
    ]


def _inv(blob: bytes) -> Inventory:
    return {bytes(k): [bytes(h) for h in v] for k, v in msgpack.unpackb(blob).items()}


def _domain_key(communities: list[Community]) -> str:
    private = [c for c in communities if c.private]
    return private[0].hex if private else "open"


def sync(
    home: Home,
    folder: Path,
    *,
    prune: bool = False,
    max_file_size: int = stick.DEFAULT_MAX_FILE_SIZE,
    communities: list[Community] | None = None,
    say: Say | None = None,
    max_size: int | None = None,
    attachments: bool = True,
) -> SyncResult:
    say = say or (lambda _m: None)
    if not folder.is_dir():
        raise BundleError(f"{folder} is not a folder (is the stick mounted?)")
    result = SyncResult()
    me = home.public_key
    mine = {d for _n, d, *_ in _written(home, folder)}
    keys = keys_for(home)
    exporters: set[bytes] = set()

    on_stick = scan(folder)
    for found in on_stick:
        label = found.files[0].name
        if found.digest in mine:
            result.own += 1
            continue
        seen = home.store.db.execute(
            "SELECT exporter FROM bundles_seen WHERE sha256 = ?", (found.digest,)
        ).fetchone()
        if seen is not None:
            result.already += 1
            if seen[0] and seen[0] != me:
                exporters.add(seen[0])
            continue
        try:
            imported = import_bundle(home, found.files, keys=keys, digest=found.digest)
        except WrongKey:
            result.unreadable += 1
            continue
        except BundleError as exc:
            result.damaged.append((label, str(exc)))
            say(f"skipped {label}: {exc}")
            continue
        if imported.exporter == me:
            result.own += 1
            continue
        exporters.add(imported.exporter)
        result.imported.append(imported)

    # what the others lack, given what our own bundles on the stick already carry
    present = {f.digest for f in on_stick}
    ours_on_stick = [w for w in _written(home, folder) if w[1] in present]
    with scratch_dir(home) as tmp:
        scratch = Path(tmp)
        for domain in domains(select(home, communities)):
            key = _domain_key(domain.communities)
            carried: Inventory = {}
            for _names, _digest, dom, _complete, inv in ours_on_stick:
                if dom == key:
                    for doc, heads in inv.items():
                        carried[doc] = sorted(set(carried.get(doc, [])) | set(heads))
            peers: list[Inventory] | None = None  # --prune: one complete bundle per domain
            if not prune:
                peers = [_union(exchange.known_by(home, x), carried) for x in sorted(exporters)]
                peers = peers or [carried]
            # attachments: never what a bundle on the stick already carries
            blob_have = blob_exchange.union(
                blob_exchange.on_stick(home, present),
                blob_exchange.all_have([blob_exchange.known_have(home, x) for x in exporters]),
            )
            plan = blob_exchange.Plan(
                max_size, attachments, blob_have, blob_exchange.known_wants(home)
            )
            built = build(home, domain, scratch, peer=peers, plan=plan)
            if built is None:
                continue
            built.extra["attachments"] = plan

            def check(paths: list[Path]) -> None:
                verify_bundle(paths, keys)

            paths = stick.write_to_stick(
                built.path, folder, max_file_size=max_file_size, verify=check
            )
            digest = file_digest(paths)
            blob_exchange.remember_carried(home, digest, plan.carried)
            inventory = exchange.inventory(home, [c.id for c in domain.communities])
            with home.store.transaction() as db:
                db.execute(
                    "INSERT OR REPLACE INTO bundles_written"
                    " (name, dir, sha256, domain, complete, inventory, at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        json.dumps([p.name for p in paths]),
                        str(folder.resolve()),
                        digest,
                        key,
                        int(prune),
                        msgpack.packb(inventory),
                        int(time.time()),
                    ),
                )
            result.written.append((paths, built))
            if prune:
                result.pruned += _prune(home, folder, key, keep=digest)
    return result


def _union(a: Inventory, b: Inventory) -> Inventory:
    out = dict(a)
    for doc, heads in b.items():
        out[doc] = sorted(set(out.get(doc, [])) | set(heads))
    return out


def _prune(home: Home, folder: Path, domain: str, keep: bytes) -> list[Path]:
    """Remove our older bundles of `domain` in `folder`: the new complete one holds all."""
    removed: list[Path] = []
    for names, digest, dom, _complete, _inv in _written(home, folder):
        if dom != domain or digest == keep:
            continue
        for name in names:
            path = folder / name
            if path.exists():
                path.unlink()
                removed.append(path)
        with home.store.transaction() as db:
            db.execute(
                "DELETE FROM bundles_written WHERE dir = ? AND sha256 = ?",
                (str(folder.resolve()), digest),
            )
    return removed
