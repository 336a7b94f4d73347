"""Writing bundles: everything a peer lacks, one file per encryption domain.

Open communities share one plain bundle; each private community gets its own
file encrypted to that community's age recipient, so a member of one private
community can never open another's. Files are built in a private scratch
folder and only then moved into place (atomically), so an interrupted export
leaves nothing half-written behind.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import blake3

from p2p import atomic, exchange
from p2p.background_hash import BackgroundHash
from p2p.blobs import exchange as blob_exchange
from p2p.bundle import crypt, inventories
from p2p.bundle.container import VERSION, BundleStats, write_bundle
from p2p.bundle.records import community_record, inventory_records
from p2p.community import Community, all_communities
from p2p.direct import DirectWriter
from p2p.exchange import Inventory
from p2p.gather import Gather, Pieces
from p2p.home import Home

Progress = Callable[[int, int | None, int], None]  # (bytes written, bytes expected, documents)


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
    # BLAKE3 of the file as written: its name (bundles_seen, the stick), and what a
    # read-back of it must hash to
    name: bytes = b""
    inventory: bytes = b""  # digest of the full inventory it describes
    extra: dict = field(default_factory=dict)


@dataclass
class Listing:
    """The inventory a bundle carries: full, or what changed since `base`."""

    scope: bytes
    full: Inventory
    base: bytes | None
    records: list[dict]
    digest: bytes


def listing(home: Home, ids: list[bytes], base: bytes | None | bool) -> Listing:
    """`base`: a digest of one of our earlier inventories, True for our latest one
    of the same communities, False or None for a full inventory."""
    full = exchange.inventory(home, ids)
    scope = inventories.scope_of(ids)
    me = home.public_key
    earlier: tuple[bytes, Inventory] | None = None
    if base is True:
        earlier = inventories.latest(home, me, scope)
    elif isinstance(base, bytes):
        got = inventories.known(home, me, base)
        earlier = (base, got) if got is not None else None
    digest = inventories.digest(full)
    if earlier is None:
        records = inventory_records(full, digest=digest)
        return Listing(scope, full, None, records, digest)
    listed = inventories.delta(full, earlier[1])
    # the heads we listed last time are hashes we still hold: a reader that is
    # behind on a document likely has one, and then sends back only what follows
    hints = {d: earlier[1][d] for d in listed if full.get(d) and earlier[1].get(d)}
    records = inventory_records(listed, hints, base=earlier[0], digest=digest)
    return Listing(scope, full, earlier[0], records, digest)


def _records(
    home: Home,
    domain: Domain,
    peer: Inventory | list[Inventory] | None,
    progress: Progress | None,
    plan: blob_exchange.Plan | None = None,
    listed: Listing | None = None,
) -> Iterator[dict]:
    ids = [c.id for c in domain.communities]
    for c in domain.communities:
        yield community_record(home, c)
    yield from (listed or listing(home, ids, None)).records
    for record in exchange.records_for(home, peer, ids):
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
    base: bytes | None = None,
    plan: blob_exchange.Plan | None = None,
    out_dir: Path | None = None,
    version: int = VERSION,
) -> Built | None:
    """Write one domain's bundle into `scratch`; None when the peer lacks nothing.
    `plan`: the attachment budget and what the reader holds (default: send all).
    `version`: the container format (1 only for recipients whose p2p predates 2).
    `out_dir`: write it under a hidden temporary name in that folder instead (the
    destination's, so that `place` only renames it: the bytes are written once).

    With a peer, the inventory lists only what changed since `base` (one of our
    earlier inventories, by digest; default our latest of these communities).

    One pass: the records are packed, hashed (container trailer and the file's
    own BLAKE3, which names it: in version 2 one hash gives both) and, for a
    private community, encrypted as they are written, so neither
    a plain copy nor a second read of the file is ever made."""
    docs = chunks = 0
    ids = [c.id for c in domain.communities]
    listed = listing(home, ids, (base or True) if peer is not None else None)

    def counted() -> Iterator[dict]:
        nonlocal docs, chunks
        for r in _records(home, domain, peer, progress, plan, listed):
            if r["t"] == "doc":
                docs += 1
            elif r["t"] == "blob-chunk":
                chunks += 1
            yield r

    expected = exchange.stored_size(home, peer, ids) if progress else None
    encrypted = domain.recipient is not None or passphrase is not None
    final = (out_dir or scratch) / f".p2p-{os.urandom(8).hex()}.tmp"
    fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        # past the page cache, in large aligned writes (p2p/direct.py); the caller
        # (`place`) fsyncs it before giving it its name
        with closing_fd(fd), DirectWriter(fd, background=True) as direct:
            if passphrase is None and domain.recipient is not None:  # age, written here
                named = _Hashing(direct, blake3.blake3())  # the name: the ciphertext's BLAKE3
                stats = _to_recipient(
                    home, named, counted(), domain, progress, expected, lambda: docs, version
                )
                name = named.hash.digest()
            elif passphrase is not None:  # named by the BLAKE3 of the ciphertext, as written
                sink = _Hashing(direct, BackgroundHash("blake3"))
                try:
                    stats = _with_passphrase(
                        home,
                        sink,  # type: ignore[arg-type]
                        counted(),
                        passphrase,
                        progress,
                        expected,
                        lambda: docs,
                        version,
                    )
                    name = bytes(sink.hash.done().digest())
                finally:
                    sink.hash.close()
            else:  # the container is the file: its own hash names it
                out = _Counting(direct, lambda n: progress(n, expected, docs) if progress else None)
                stats = write_bundle(
                    out,  # type: ignore[arg-type]
                    home.identity,
                    counted(),
                    int(time.time()),
                    version=version,
                )
                name = stats.name
        if peer is not None and docs == 0 and chunks == 0:
            final.unlink()
            return None
    except BaseException:
        final.unlink(missing_ok=True)
        raise
    inventories.remember(home, home.public_key, listed.scope, listed.full, bundle=name)
    return Built(
        domain, final, stats.count, docs, final.stat().st_size, encrypted, name, listed.digest
    )


BUFFER = 4 << 20  # large writes: fewer system calls for a big attachment


@contextmanager
def closing_fd(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _to_recipient(
    home: Home,
    sink: Writable,
    records: Iterator[dict],
    domain: Domain,
    progress: Progress | None,
    expected: int | None,
    docs: Callable[[], int],
    version: int,
) -> BundleStats:
    """Write the container through age (p2p/bundle/agewrite.py) into `sink`, on
    this thread: the plain bundle never touches the disk and is never copied.
    Before any of it is written, pyrage (the age every reader uses) opens a
    one-block file made with the same header and key: a writer that disagreed
    with it would stop here, not on the reader's side."""
    from p2p.bundle import agewrite

    assert domain.recipient is not None
    age = agewrite.AgeWriter(sink, domain.recipient)
    secrets = [c.secret for c in domain.communities if c.secret]
    if secrets:
        crypt.check_sample(age.sample(), secrets)
    stats = _encrypted_container(home, age, records, progress, expected, docs, version)
    age.close()
    return stats


def _encrypted_container(
    home: Home,
    out: Writable,
    records: Iterator[dict],
    progress: Progress | None,
    expected: int | None,
    docs: Callable[[], int],
    version: int,
) -> BundleStats:
    """The container, written into the stream `out` that encrypts it, with progress;
    no name of its own: the file is the ciphertext, named by its own hash."""
    counted = _Counting(out, lambda n: progress(n, expected, docs()) if progress else None)
    return write_bundle(
        counted,  # type: ignore[arg-type]
        home.identity,
        records,
        int(time.time()),
        version=version,
        name=False,
    )


def _with_passphrase(
    home: Home,
    sink: BinaryIO,
    records: Iterator[dict],
    passphrase: str,
    progress: Progress | None,
    expected: int | None,
    docs: Callable[[], int],
    version: int = VERSION,
) -> BundleStats:
    """Write the container into a hand-over queue that age (pyrage, scrypt
    stanza) encrypts into `sink` on a thread: the plain bundle never touches the
    disk and is never read back. The queue passes the writer's own buffers (an
    attachment chunk as read), not copies through an OS pipe (0.3 s less kernel
    time per GiB)."""
    handover = HandOver()
    errors: list[BaseException] = []

    def seal() -> None:
        try:
            crypt.encrypt_passphrase(handover, sink, passphrase)  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the writing side
            errors.append(exc)
            handover.refuse()  # the writer's next write raises: it stops

    thread = threading.Thread(target=seal, name="seal", daemon=True)
    thread.start()
    try:
        stats = _encrypted_container(home, handover, records, progress, expected, docs, version)
        handover.close()
    except BrokenPipeError:
        thread.join()  # the encrypting side stopped first: its error is the one
        if errors:
            raise errors[0] from None
        raise
    except BaseException:
        handover.abort()  # age sees an error, not a short plaintext
        thread.join()
        raise
    thread.join()
    if errors:
        raise errors[0]
    return stats


class HandOver:
    """A one-way stream between two threads that hands over the bytes objects
    themselves (a bounded queue: memory stays flat). The writer calls `write`
    and `close` (or `abort`); the reader's `read(n)` returns n bytes, fewer only
    at the end, like a buffered file. Small writes are gathered first."""

    _END, _ABORT = object(), object()

    def __init__(self, depth: int = 8) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._gather = Gather(self._put)
        self._pieces = Pieces(self._next)
        self._refused = False

    # the writing side

    def write(self, data: bytes) -> int:
        if self._refused:
            raise BrokenPipeError("the encrypting side stopped")
        self._gather.add(data)
        return len(data)

    def _put(self, item: object) -> None:
        while True:
            if self._refused:
                raise BrokenPipeError("the encrypting side stopped")
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._gather.flush()
        self._put(self._END)

    def abort(self) -> None:
        try:
            self._put(self._ABORT)
        except BrokenPipeError:
            pass

    # the reading side

    def refuse(self) -> None:
        """The reader gives up: the writer's next write raises, nothing blocks."""
        self._refused = True
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def _next(self) -> bytes | None:
        item = self._queue.get()
        if item is self._ABORT:
            raise OSError("the bundle being encrypted was not finished")
        return None if item is self._END else item  # type: ignore[return-value]

    def read(self, n: int | None = -1) -> bytes:
        return self._pieces.read(n)


class Writable(Protocol):
    def write(self, data: bytes) -> int: ...

    def flush(self) -> None: ...


class _Hashing:
    """A file wrapper that hashes what goes through it (the file's name) before
    passing it on. `hash`: a `BackgroundHash` (on a helper thread: for a writer
    that hands over bytes it never changes) or a BLAKE3 (in this thread, which it
    lets go of while hashing: for `agewrite.AgeWriter`, which reuses its buffer;
    a helper thread would need a copy of every byte)."""

    def __init__(self, out: Writable, hash: Any) -> None:
        self.out, self.hash = out, hash

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


class _Counting:
    """A file wrapper that reports how many bytes went through it."""

    def __init__(self, out: Writable, tick: Callable[[int], object]) -> None:
        self.out, self.tick, self.n = out, tick, 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        self.tick(self.n)
        return self.out.write(data)


def scratch_dir(home: Home) -> tempfile.TemporaryDirectory:
    """A private folder inside the home (same disk as the store, never the stick)."""
    base = home.path / "tmp"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    return tempfile.TemporaryDirectory(dir=base)


def select(home: Home, wanted: list[Community] | None) -> list[Community]:
    return wanted if wanted else all_communities(home)


def place(built: Built, dest: Path, force: bool = False) -> Path:
    """Move a built bundle to `dest` atomically; an existing `dest` only with `force`.
    Built in `dest`'s folder (`build(out_dir=...)`), it is only renamed there."""
    try:
        if built.path.parent.resolve() == Path(dest).parent.resolve():
            return atomic.move_into_place(built.path, dest, force=force)

        def fill(out: BinaryIO) -> None:
            with built.path.open("rb") as src:
                shutil.copyfileobj(src, out, BUFFER)

        return atomic.write_file(dest, fill, force=force)
    finally:
        built.path.unlink(missing_ok=True)


def discard(built: Built | None) -> None:
    """Remove a built bundle that will not be placed (its temporary file)."""
    if built is not None:
        built.path.unlink(missing_ok=True)
