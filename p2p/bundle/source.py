"""Opening a bundle from disk, whatever layers it has: parts, age, container.

`open_bundle` peels the layers in order: numbered parts are joined, an age
envelope is decrypted as a stream (here, or by the age CLI through a pipe: the
plaintext of a private community never lands on disk), and the container
reader is returned.
"""

from __future__ import annotations

import io
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pyrage import x25519

from p2p import direct
from p2p.background_hash import BackgroundHash
from p2p.bundle import ageread, crypt, parts
from p2p.bundle.container import BundleReader, HeldReader, Stage
from p2p.bundle.parts import HEAD, file_head, part_set
from p2p.errors import NotABundle, WrongKey


@dataclass
class Keys:
    """What may open an encrypted bundle."""

    identities: list[x25519.Identity] = field(default_factory=list)
    passphrase: str | None = None


class _PipeReader:
    """The read end of a decrypting thread; re-raises the thread's error."""

    def __init__(self, fd: int, thread: threading.Thread, errors: list[BaseException]) -> None:
        self._fh = os.fdopen(fd, "rb", buffering=READ)
        self._thread = thread
        self._errors = errors

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        if (not data or (n > 0 and len(data) < n)) and self._finish():
            raise self._errors[0]
        return data

    def _finish(self) -> bool:
        self._thread.join()
        return bool(self._errors)

    def close(self) -> None:
        self._fh.close()
        self._thread.join(timeout=5)


def big_pipe() -> tuple[int, int]:
    """A pipe with a 1 MiB kernel buffer where Linux allows it (64 KiB by
    default): far fewer thread switches for a large bundle through age."""
    r, w = os.pipe()
    _widen(w)
    return r, w


AGE = shutil.which("age")  # the age CLI (Debian `age`): decrypts twice as fast, off the GIL


class _AgeReader:
    """The plaintext of an age file, from the `age` CLI in a process of its own:
    a thread feeds it the ciphertext (hashed on the way by the stream given),
    the identities go through a pipe (never to disk). Errors come at the end of
    the stream, as age reports them."""

    def __init__(self, src: BinaryIO, identities: list) -> None:
        keys_r, keys_w = os.pipe()
        secrets = "".join(f"{i}\n" for i in identities).encode()
        try:
            os.write(keys_w, secrets)  # a few lines: well under any pipe's buffer
        finally:
            os.close(keys_w)
        try:
            self._proc = subprocess.Popen(
                [AGE or "age", "-d", "-i", f"/dev/fd/{keys_r}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(keys_r,),
                bufsize=0,
            )
        finally:
            os.close(keys_r)
        for pipe in (self._proc.stdin, self._proc.stdout):
            _widen(pipe.fileno())  # type: ignore[union-attr]
        self._out = os.fdopen(self._proc.stdout.fileno(), "rb", buffering=READ, closefd=False)  # type: ignore[union-attr]
        self._errors: list[BaseException] = []
        self._feeder = threading.Thread(target=self._feed, args=(src,), daemon=True)
        self._feeder.start()

    def _feed(self, src: BinaryIO) -> None:
        sink = self._proc.stdin
        assert sink is not None
        try:  # a block as read (DirectStream.BLOCK): no piece is joined or copied
            while block := src.read(DirectStream.BLOCK):
                view = memoryview(block)
                while view:
                    view = view[sink.write(view) or 0 :]
        except BrokenPipeError:
            pass  # age stopped reading: its exit status says why
        except BaseException as exc:  # handed to the reading side
            self._errors.append(exc)
        finally:
            try:
                sink.close()
            except OSError:
                pass

    def read(self, n: int = -1) -> bytes:
        data = self._out.read(n)
        if not data or (n > 0 and len(data) < n):
            self._finish()
        return data

    def _finish(self) -> None:
        self._feeder.join()
        err = self._proc.stderr.read() if self._proc.stderr else b""
        code = self._proc.wait()
        if self._errors:
            raise self._errors[0]
        if code != 0:
            text = err.decode(errors="replace").strip()
            raise crypt.decrypt_error(RuntimeError(text)) from None

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._feeder.join(timeout=5)
        for f in (self._out, self._proc.stdout, self._proc.stderr):
            if f is not None:
                f.close()


def _widen(fd: int) -> None:
    """A 1 MiB kernel buffer for this pipe where Linux allows it."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (OSError, ImportError):
        pass


class _Replay:
    """`head` (bytes already taken from `src`), then the rest of `src`."""

    def __init__(self, head: bytes, src: BinaryIO) -> None:
        self._head = memoryview(head)
        self._src = src

    def read(self, n: int = -1) -> bytes:
        if not self._head:
            return self._src.read(n)
        take = self._head if n is None or n < 0 else self._head[:n]
        self._head = self._head[len(take) :]
        return take.tobytes()

    def readinto(self, buf: memoryview) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        pass


def _decrypting(
    src: BinaryIO, keys: Keys, passphrase: bool
) -> _PipeReader | _AgeReader | ageread.AgeReader:
    """The plaintext of the age file `src`: opened here when it is what p2p
    writes and one of our keys opens it (p2p/bundle/ageread.py), else by the
    age CLI or pyrage, which also say what is wrong with a file that does not open."""
    if not passphrase and keys.identities:
        try:
            return ageread.AgeReader(src, keys.identities)
        except ageread.NotForUs as refused:
            src = _Replay(refused.head, src)  # type: ignore[assignment]
    if AGE and not passphrase:
        return _AgeReader(src, keys.identities)
    r, w = big_pipe()
    errors: list[BaseException] = []

    def run() -> None:
        with os.fdopen(w, "wb", buffering=READ) as out:
            try:
                if passphrase:
                    crypt.decrypt_passphrase(src, out, keys.passphrase or "")
                else:
                    crypt.decrypt(src, out, keys.identities)
            except BrokenPipeError:
                pass
            except BaseException as exc:  # handed to the reading side
                errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return _PipeReader(r, thread, errors)


def payload_head(path: Path, size: int = HEAD) -> bytes:
    """The first `size` bytes of the bundle `path` names (of its first part's payload)."""
    head = file_head(path)
    if parts.is_part(head):  # the first part's payload starts the bundle
        first = [p for p in part_set(path) if parts.read_header(p).index == 0]
        if not first:
            return b""  # opening it will say which part is missing
        with first[0].open("rb") as fh:
            fh.seek(parts.HEADER.size)
            return fh.read(size)
    if size > len(head):
        with path.open("rb") as fh:
            head = fh.read(size)
    return head


def needs_passphrase(path: Path) -> bool:
    """Whether the bundle `path` names is sealed with a passphrase (not to keys)."""
    return crypt.is_passphrase(payload_head(path))


@dataclass
class Opened:
    reader: BundleReader | HeldReader
    encrypted: bool
    files: list[Path]
    # the file's name (single files, from the same pass): BLAKE3 of its bytes as stored
    digest: bytes | None = None
    # a version 1 container's file: the SHA-256 of its bytes, the name p2p gave it
    # before version 2 (so that rows written then still recognise it)
    legacy: bytes | None = None


READ = 4 << 20  # large reads: fewer system calls for a big attachment


class DirectStream:
    """A bundle file read past the page cache (O_DIRECT, p2p/direct.py) in large
    aligned blocks: read once, a GiB through the cache costs the kernel far more
    than the copy out of one reused buffer does here (and a stick is read from
    the stick). A direct read waits for the device, so a helper thread reads
    AHEAD blocks in advance (the kernel's read-ahead does that for cached reads).
    Plain reads where the file system refuses O_DIRECT."""

    AHEAD = 2
    BLOCK = 2 << 20  # bytes per direct read (AHEAD + 2 of them in memory at most)

    def __init__(self, path: Path) -> None:
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(self.AHEAD)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(path,), daemon=True)
        self._thread.start()
        self._blocks = iter(self._take, None)
        self._block = b""
        self._at = 0

    def _run(self, path: Path) -> None:
        blocks = direct.read_blocks(path, self.BLOCK)
        try:
            for block in blocks:
                if self._stop.is_set():
                    break
                self._queue.put(block)
            self._queue.put(None)
        except BaseException as exc:  # handed to the reading side
            self._queue.put(exc)
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()

    def _take(self) -> bytes | None:
        got = self._queue.get()
        if isinstance(got, BaseException):
            raise got
        if got is None:
            self._blocks = iter(())  # the end: every later read is empty
        return got

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            rest = [self._block[self._at :], *self._blocks]
            self._block, self._at = b"", 0
            return b"".join(rest)
        if self._at + n <= len(self._block):  # the common case: one slice
            self._at += n
            return self._block[self._at - n : self._at]
        if self._at == len(self._block):  # at a block's end: start the next one
            self._block, self._at = next(self._blocks, b""), 0
            if n <= len(self._block):  # within it: a slice, or the block itself
                self._at = n
                return self._block if n == len(self._block) else self._block[:n]
        pieces = [self._block[self._at :]]
        got = len(pieces[0])
        while got < n:
            self._block = next(self._blocks, b"")
            if not self._block:
                self._at = 0
                return b"".join(pieces)
            take = min(n - got, len(self._block))
            pieces.append(self._block[:take])
            got += take
            self._at = take
        return b"".join(pieces)

    def readinto(self, buf: memoryview) -> int:
        data = self.read(len(buf))
        memoryview(buf)[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():  # make room so the helper sees the stop
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass


class _HashingReader:
    """The file's bytes as read, hashed on the way (its BLAKE3 names it in
    bundles_seen): the proving pass gives it, so no pass of its own is needed.
    The hashing runs on helper threads (BackgroundHash): whoever reads (the
    thread feeding age) only reads.

    Its SHA-256 too (the name p2p gave files before container version 2) until
    `modern()` says the container inside is version 2: then only the first few
    MiB (read ahead before the header was decrypted) were hashed for nothing."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.hash = BackgroundHash("blake3")
        self._legacy: BackgroundHash | None = BackgroundHash("sha256")
        self._modern = False

    def modern(self) -> None:
        """The container is version 2: no SHA-256 is needed (from any thread)."""
        self._modern = True

    def _update(self, data: bytes) -> None:
        self.hash.update(data)
        legacy = self._legacy
        if legacy is not None:
            if self._modern:  # dropped on the reading thread, the only one updating
                self._legacy = None
                legacy.close()
            else:
                legacy.update(data)

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self._update(data)
        return data

    def readinto(self, buf: memoryview) -> int:
        got = self._fh.readinto(buf)  # type: ignore[attr-defined]
        if got:
            self._update(bytes(memoryview(buf)[:got]))
        return got

    def finish(self) -> tuple[bytes, bytes | None]:
        """(BLAKE3, SHA-256 or None) of the whole file (whatever the reader left
        unread is hashed too)."""
        while block := self._fh.read(READ):
            self._update(block)
        legacy = self._legacy
        old = None if legacy is None or self._modern else bytes(legacy.done().digest())
        return bytes(self.hash.done().digest()), old

    def close(self) -> None:
        self.hash.close()
        if self._legacy is not None:
            self._legacy.close()
        self._fh.close()


@contextmanager
def open_bundle(
    paths: list[Path],
    keys: Keys | None = None,
    *,
    stage: Stage | None = None,
    progress: Callable[[int], None] | None = None,
    hash_file: bool = True,
) -> Iterator[Opened]:
    """Open one bundle (a file, or the parts of one) for reading.

    The container is first read through once and its trailer checked (hash of
    every byte, count, the exporter's signature) without decoding any record
    but attachment chunks, which go to `stage` (`BundleReader.prove`); only a
    bundle that passes has its records parsed: replayed from memory when they
    fit (`HOLD`), else read (and decrypted) again (docs/bundle-format.md, "What
    a reader must do"). `progress(bytes read)` during the first reading.
    `hash_file=False`: the caller needs no name of the file (`Opened.digest`
    may then be None; an encrypted file's ciphertext is not hashed)."""
    keys = keys or Keys()
    first = paths[0]
    head = file_head(first)
    if not head:
        raise NotABundle(f"{first.name} is empty, not a bundle")
    files = [first]
    closers: list = []
    split = parts.is_part(head)
    if split:
        files = paths if len(paths) > 1 else part_set(first)
        with parts.open_parts(files) as joined:
            head = joined.read(HEAD)
    encrypted, passphrase = crypt.is_encrypted(head), crypt.is_passphrase(head)
    if passphrase and keys.passphrase is None:
        raise WrongKey("this bundle is sealed with a passphrase: give it (P2P_BUNDLE_PASSPHRASE)")
    if encrypted and not passphrase and not keys.identities:
        raise WrongKey("this bundle is encrypted and you hold no key for it")

    plain: bytes | None = None  # a passphrase bundle, decrypted once (scrypt is slow)
    hashing: list[_HashingReader] = []

    def container() -> BinaryIO:
        """A fresh stream of the plain container, through whatever layers it has."""
        nonlocal plain
        if plain is not None:
            return io.BytesIO(plain)
        if split:
            stream: BinaryIO = parts.open_parts(files)  # type: ignore[assignment]
        else:
            stream = DirectStream(first)  # type: ignore[assignment]
            if encrypted and hash_file and not hashing:  # the proving pass hashes it too
                hashing.append(_HashingReader(stream))
                stream = hashing[0]  # type: ignore[assignment]
        closers.append(stream)
        if passphrase:  # pyrage holds these in memory anyway (crypt.py)
            out = io.BytesIO()
            crypt.decrypt_passphrase(stream, out, keys.passphrase or "")
            plain = out.getvalue()
            return io.BytesIO(plain)
        if encrypted:
            pipe = _decrypting(stream, keys, passphrase)
            closers.append(pipe)
            return pipe  # type: ignore[return-value]
        return stream

    try:
        direct_file = hash_file and not split and not encrypted
        first_reading = BundleReader(container(), progress=progress, name=direct_file)
        if hashing and first_reading.header.version != 1:
            hashing[0].modern()
        stats = first_reading.prove(stage)
        digest = legacy = None  # the file's names, from this same pass where they can be had:
        if hashing:  # an encrypted file: its ciphertext was hashed as it was read
            digest, legacy = hashing[0].finish()
        elif direct_file:  # a plain file is the container, byte for byte
            digest, legacy = stats.name, stats.legacy or None
        _close(closers)
        if stats.held is not None:
            reader: BundleReader | HeldReader = HeldReader(first_reading.header, stats)
        else:
            reader = BundleReader(container(), proven=stats)
        yield Opened(reader, encrypted, files, digest, legacy)
    finally:
        _close(closers)


def _close(closers: list) -> None:
    for c in reversed(closers):
        try:
            c.close()
        except Exception:  # noqa: BLE001 - closing after an error
            pass
    closers.clear()
