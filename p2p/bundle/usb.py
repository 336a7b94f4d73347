"""The USB drop box: a folder on a stick shared by many people.

`sync` imports every bundle there that is new and opens with our keys, then
writes, per encryption domain, what the other bundles' exporters still lack
(given what our own earlier bundles on the stick already carry them). Names on
the stick are random; nothing but bundles is ever written there.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections.abc import Callable, Container
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from p2p import exchange
from p2p.blobs import exchange as blob_exchange
from p2p.bundle import crypt, filecache, inventories, parts, stick
from p2p.bundle.container import MAGIC, VERSION
from p2p.bundle.export import Built, build, domains, scratch_dir, select
from p2p.bundle.importer import ImportResult, contents, import_bundle, keys_for, learn
from p2p.bundle.names import file_digest, legacy_digest
from p2p.bundle.parts import part_set
from p2p.bundle.source import Keys
from p2p.bundle.verify import verify_bundle
from p2p.community import Community
from p2p.errors import BundleError, P2PError, WrongKey
from p2p.exchange import Inventory
from p2p.home import Home

Say = Callable[[str], None]
# meter(label, bytes expected, unit) -> a context yielding update(bytes done, total=, count=)
Meter = Callable[[str, int | None, str], AbstractContextManager[Callable[..., None]]]


def _no_meter(_label: str, _total: int | None, _unit: str) -> AbstractContextManager:
    return nullcontext(lambda *_a, **_k: None)


@dataclass
class Found:
    files: list[Path]
    digest: bytes | None  # None: not read yet (its import names it: filecache.py)


@dataclass
class SyncResult:
    imported: list[ImportResult] = field(default_factory=list)
    own: int = 0
    already: int = 0
    unreadable: list[str] = field(default_factory=list)  # for communities we are not in
    damaged: list[tuple[str, str]] = field(default_factory=list)  # (file, why) set aside
    written: list[tuple[list[Path], Built]] = field(default_factory=list)
    pruned: list[Path] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)  # temporary files of an interrupted write
    problem: P2PError | None = None  # why nothing (more) could be written


# what an interrupted write leaves: a part being copied, or a bundle being built in place
TEMP = re.compile(r"\.tmp-[0-9a-f]{12}|\.p2p-[0-9a-f]{16}\.tmp")


def _is_bundle_head(head: bytes) -> bool:
    return head.startswith(MAGIC) or crypt.is_encrypted(head) or parts.is_part(head)


def _looks_like_ours(name: str) -> bool:
    """A name we would give a bundle or a part (other files on a stick are not ours to judge)."""
    return bool(re.fullmatch(r"[^.].*\.p2p(\.\d{3})?", name))


def scan(
    folder: Path,
    damaged: list[tuple[str, str]] | None = None,
    known: Callable[[list[Path]], bytes | None] | None = None,
    hash_names: Container[str] = (),
    mine: Container[bytes] = (),
) -> list[Found]:
    """Bundles in `folder` (parts grouped into one), skipping temporary files.
    A `*.p2p` file that cannot be read, is not a bundle or whose part set is
    broken is added to `damaged` with the reason, and the scan goes on."""
    found: list[Found] = []
    seen: set[Path] = set()
    damaged = damaged if damaged is not None else []
    for path in sorted(folder.iterdir()):
        if path in seen or path.name.startswith("."):
            continue
        try:
            if not path.is_file():
                continue
            with path.open("rb") as fh:
                head = fh.read(64)
            if not _is_bundle_head(head):
                if _looks_like_ours(path.name):
                    damaged.append((path.name, "not a p2p bundle (unknown format); left as is"))
                continue
            files = part_set(path) if parts.is_part(head) else [path]
            seen.update(files)
            digest = known(files) if known is not None else None
            if digest is None and (known is None or len(files) > 1 or path.name in hash_names):
                digest = file_digest(files)
                if path.name in hash_names and digest not in mine:
                    # one of ours written before container version 2: its row has
                    # the name p2p gave files then (SHA-256)
                    old = legacy_digest(files)
                    digest = old if old in mine else digest
            found.append(Found(files, digest))
        except (P2PError, OSError) as exc:
            seen.add(path)
            damaged.append((path.name, _why(exc)))
    return found


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"could not be read ({exc.strerror or exc})"
    return str(exc)


def clean_temporaries(folder: Path) -> list[str]:
    """Remove what an interrupted write left (`.tmp-<12 hex>`, our pattern only)."""
    removed = []
    for path in folder.iterdir():
        if TEMP.fullmatch(path.name) and path.is_file():
            try:
                path.unlink()
                removed.append(path.name)
            except OSError:
                continue  # a read-only stick: said when writing
    return removed


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
    meter: Meter | None = None,
    version: int = VERSION,
) -> SyncResult:
    """Each file on the stick is judged on its own: one that is damaged, cut
    short, hostile or not a bundle is set aside (named, with the reason) and
    the rest is imported and written all the same. `version`: the container
    format written (1 only for readers whose p2p predates version 2)."""
    say = say or (lambda _m: None)
    meter = meter or _no_meter
    if not folder.is_dir():
        raise BundleError(f"{folder} is not a folder (is the stick mounted?)")
    result = SyncResult()
    result.cleaned = clean_temporaries(folder)
    me = home.public_key
    written = _written(home, folder)
    mine = {d for _n, d, *_ in written}
    ours = {name for names, *_ in written for name in names}  # hashed first, as before
    keys = keys_for(home)
    exporters: set[bytes] = set()

    # a bundle file read before is named by the digest it had; another one is
    # imported directly, named by the digest its one reading computed
    on_stick = scan(folder, result.damaged, lambda fs: filecache.known(home, fs), ours, mine)
    for found in on_stick:
        label = found.files[0].name
        if found.digest is not None:
            filecache.remember(home, found.files, found.digest)
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
            size = sum(f.stat().st_size for f in found.files)
            with meter(f"importing {label}", size, "changes applied") as update:
                imported = import_bundle(
                    home,
                    found.files,
                    keys=keys,
                    digest=found.digest,
                    progress=lambda n, c: update(n, count=c),
                )
        except WrongKey:
            result.unreadable.append(label)
            continue
        except (P2PError, OSError, ValueError) as exc:
            result.damaged.append((label, _why(exc)))
            say(f"set aside {label}: {_why(exc)}")
            continue
        if found.digest is None:
            found.digest = imported.digest
            filecache.remember(home, found.files, imported.digest)
            if imported.already_imported:  # read again for nothing, this once
                result.already += 1
                if imported.exporter != me:
                    exporters.add(imported.exporter)
                continue
        if imported.exporter == me:
            result.own += 1
            continue
        exporters.add(imported.exporter)
        result.imported.append(imported)
    # an incremental inventory read before its base (names are random) is learnt again
    for r in result.imported:
        if r.listed is not None and not r.learnt_whole:
            with home.store.transaction():
                r.learnt_whole = learn(home, r.exporter, r.listed, None)

    # what the others lack, given what is on the stick already: our own bundles'
    # inventories and what the others' bundles there carry
    present = {f.digest for f in on_stick if f.digest is not None}
    ours_on_stick = [w for w in _written(home, folder) if w[1] in present]
    on_stick_others: Inventory = {}
    for f in on_stick:
        if f.digest is not None and f.digest not in mine:
            on_stick_others = _union(on_stick_others, contents(home, f.digest))
    # each bundle is written once, in place on the stick under a hidden temporary
    # name, then checked and renamed (stick.settle). The files of one sync are
    # written in random order and all get one modification time: nothing ties
    # one bundle of ours to another by when or in which order it was written
    # (docs/threat-model.md)
    todo = domains(select(home, communities))
    # attachments: never what a bundle on the stick already carries (the same for
    # every domain: read once)
    blob_have = blob_exchange.union(
        blob_exchange.on_stick(home, present),
        blob_exchange.all_have([blob_exchange.known_have(home, x) for x in exporters]),
    )
    wants = blob_exchange.known_wants(home)
    random.SystemRandom().shuffle(todo)
    stamp = _session_time()
    with scratch_dir(home) as tmp:
        scratch = Path(tmp)
        try:
            for domain in todo:
                key = _domain_key(domain.communities)
                carried: Inventory = dict(on_stick_others)
                base = None
                for _names, _digest, dom, _complete, inv in ours_on_stick:
                    if dom == key:
                        carried = _union(carried, inv)
                        base = inventories.digest(inv)  # the latest one, by time written
                peers: list[Inventory] | None = None  # --prune: one complete bundle per domain
                if not prune:
                    peers = [_union(exchange.known_by(home, x), carried) for x in sorted(exporters)]
                    peers = peers or [carried]
                plan = blob_exchange.Plan(max_size, attachments, blob_have, wants)
                stick.check_room(folder)
                with meter("writing to the stick", None, "documents") as update:
                    built = build(
                        home,
                        domain,
                        scratch,
                        peer=peers,
                        base=base,
                        plan=plan,
                        out_dir=folder,
                        progress=lambda n, total, docs: update(n, total=total, count=docs),
                        version=version,
                    )
                    if built is None:
                        continue
                    built.extra["attachments"] = plan
                    _write_one(
                        home, folder, key, built, prune, max_file_size, keys, stamp, result, update
                    )
        except P2PError as exc:
            result.problem = exc
        except OSError as exc:
            result.problem = stick.write_error(exc, folder)
    return result


def _session_time() -> float:
    """One modification time for every file of a sync: the start of the current
    hour (FAT keeps 2-second steps; an hour says little about who wrote what)."""
    now = time.time()
    return now - now % 3600


def _write_one(
    home: Home,
    folder: Path,
    key: str,
    built: Built,
    prune: bool,
    max_file_size: int,
    keys: Keys,
    stamp: float,
    result: SyncResult,
    progress: Callable[..., None],
) -> None:
    def check(paths: list[Path]) -> None:
        verify_bundle(paths, keys)

    if built.size > max_file_size:  # parts: each copied from the whole, read back, verified
        try:
            paths = stick.write_to_stick(
                built.path, folder, max_file_size=max_file_size, verify=check, progress=progress
            )
        finally:
            built.path.unlink(missing_ok=True)
    else:
        # the bundle as build() wrote it, byte for byte: read back from the stick and
        # compared with the BLAKE3 of every byte written, which is what a failing
        # stick breaks (that our own writer writes valid bundles, the tests prove)
        paths = [stick.settle(built.path, folder, built.name)]
    for p in paths:
        os.utime(p, (stamp, stamp))
    # one file is the built bundle byte for byte (read back and verified above)
    digest = built.name if len(paths) == 1 and built.name else file_digest(paths)
    blob_exchange.remember_carried(home, digest, built.extra["attachments"].carried)
    inventory = exchange.inventory(home, [c.id for c in built.domain.communities])
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
                time.time(),
            ),
        )
    result.written.append((paths, built))
    if prune:
        result.pruned += _prune(home, folder, key, keep=digest)


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
