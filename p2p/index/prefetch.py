"""Loading and reading new documents on the second core while the first one imports.

Indexing a feed the store has never held means loading it (0.2 s for 20k posts)
and reading every post out of Automerge, two binding calls per post (a 1M-post
import: about 14 s), and the binding holds the GIL. A big import therefore
starts one helper process that loads each new author-owned document from the
same saved bytes and reads each of its top-level maps whole (`update.whole`:
what the index would read), while the importer itself prices, judges and stores.

- Loaded: the helper says so with the heads at once (`loaded`). `Document.load`
  refused the bytes unless every change's hash matched the heads they name, so
  the importer takes those heads for these very bytes (`binding.Vouched`) and
  does not load the document itself, unless something needs more than its heads.
- Read: the index asks for a document's maps when it gets to it (`take`):
  read already: taken, if the helper loaded the very same heads; being read:
  waited for; not started yet: the importer reads it itself, and the helper is
  told to skip it, so both cores stay busy whichever one is ahead.

The helper only ever sees bytes the importer priced first (`amformat`); what it
sends back is used only for the bytes object it was sent and the heads the
importer committed. If it fails or dies, every document is loaded and read in
process as before: slower, never different.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from p2p import amformat, binding
from p2p.docref import CHAT, FEED
from p2p.errors import DamagedData

if TYPE_CHECKING:  # the process machinery loads only when an import starts a helper
    from multiprocessing.connection import Connection

    from p2p.home import Home

READ = {FEED: "posts", CHAT: "messages"}  # the top-level map read whole per kind
STOP_WAIT = 5.0  # seconds the helper is given to exit before it is killed


def _serve(conn: Connection, out: Connection) -> None:
    """The helper process: read each document sent, unless told to skip it."""
    from automerge.core import ROOT, Document

    from p2p.documents import get_obj
    from p2p.index.update import TOPS, whole

    todo: deque[tuple[bytes, str, bytes]] = deque()
    skip: set[bytes] = set()
    while True:
        while not todo or conn.poll(0):
            msg = conn.recv()
            if msg[0] == "stop":
                return
            if msg[0] == "doc":
                todo.append(msg[1:])
            elif msg[0] == "skip":
                skip.add(msg[1])
        doc_id, kind, data = todo.popleft()
        if doc_id in skip:
            skip.discard(doc_id)
            continue
        out.send(("start", doc_id))
        try:
            doc = Document.load(data)
            heads = doc.get_heads()
            out.send(("loaded", doc_id, heads))  # the importer need not load it too
            tops = {top: whole(doc, top) for top in TOPS[kind]}
            obj = get_obj(doc, ROOT, READ[kind])  # how many entries are new: all of them
            out.send(("done", doc_id, heads, tops, len(doc.keys(obj)) if obj else 0))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # noqa: BLE001 - the importer reads this one itself
            out.send(("done", doc_id, None, None, 0))


class Prefetch:
    """The importer's side of the helper process."""

    def __init__(self) -> None:
        import subprocess
        from multiprocessing.connection import Connection

        # a fresh interpreter running this module (never a fork of a process holding
        # SQLite, and never the importing program's own __main__ run again)
        to_child, from_parent = os.pipe()
        from_child, to_parent = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", "from p2p.index.prefetch import serve; serve()"],
                stdin=to_child,
                stdout=to_parent,
                stderr=subprocess.DEVNULL,
            )
        except BaseException:
            for fd in (from_parent, from_child):
                os.close(fd)
            raise
        finally:
            os.close(to_child)
            os.close(to_parent)
        self._out = Connection(from_parent, readable=False)
        self._conn = Connection(from_child, writable=False)
        # the importer never blocks on the pipes: one thread sends its requests, one
        # takes in the helper's results as they come (a helper blocked writing a result
        # nobody reads would sit idle while the importer works)
        self._outbox: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self._cv = threading.Condition()
        # submitted and still wanted, with the bytes sent until `loaded` is asked
        self._sent: dict[bytes, bytes | None] = {}
        self._started: set[bytes] = set()
        self._loaded: dict[bytes, list[bytes]] = {}  # heads the helper loaded, until taken
        self._done: dict[bytes, tuple[list[bytes] | None, Any, int]] = {}
        self._broken = False  # the helper failed or died: everything is read in process
        self._threads = [
            threading.Thread(target=self._send_all, name="p2p-prefetch-send", daemon=True),
            threading.Thread(target=self._receive_all, name="p2p-prefetch-recv", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _send_all(self) -> None:
        while (msg := self._outbox.get()) is not None:
            try:
                self._out.send(msg)
            except (OSError, ValueError):
                self._fail()
                return

    def _receive_all(self) -> None:
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError, ValueError):
                self._fail()
                return
            with self._cv:
                if msg[0] == "start":
                    self._started.add(msg[1])
                elif msg[0] == "loaded":
                    if msg[1] in self._sent:
                        self._loaded[msg[1]] = msg[2]
                elif msg[0] == "done":
                    self._started.discard(msg[1])
                    if msg[1] in self._sent:
                        self._done[msg[1]] = (msg[2], msg[3], msg[4])
                self._cv.notify_all()

    def _fail(self) -> None:
        with self._cv:
            self._broken = True
            self._cv.notify_all()

    def submit(self, doc_id: bytes, kind: str, data: bytes) -> None:
        """Have the helper read this new document's entries (in the order submitted)."""
        with self._cv:
            if self._broken or kind not in READ or doc_id in self._sent:
                return
            self._sent[doc_id] = data
        self._outbox.put(("doc", doc_id, kind, data))

    def wait(self, doc_id: bytes, timeout: float | None = None) -> bool:
        """Until the helper has read `doc_id` (or failed); whether it has."""
        with self._cv:
            self._cv.wait_for(lambda: doc_id in self._done or self._broken, timeout)
            return doc_id in self._done

    def loaded(self, doc_id: bytes, data: bytes) -> list[bytes] | None:
        """The heads the helper loaded `doc_id` with (`binding.Vouched`), if `data` is
        the very bytes object submitted for it (a second record naming the same
        document gets nothing): waited for if the helper has started on it; None if
        it has not (the importer loads it itself), if the bytes did not load, or if
        the helper failed. Asked once per document."""
        with self._cv:
            if self._broken or self._sent.get(doc_id) is not data:
                return None
            self._sent[doc_id] = None
            if doc_id not in self._started and doc_id not in self._done:
                return None
            self._cv.wait_for(
                lambda: doc_id in self._loaded or doc_id in self._done or self._broken
            )
            return None if self._broken else self._loaded.pop(doc_id, None)

    def take(self, doc_id: bytes, heads: list[bytes]) -> tuple[dict[str, Any], int] | None:
        """The document's top-level maps read by the helper at `heads` (`update.whole`
        of each) and how many keys its map of entries holds, or None: then the caller
        reads them itself (and the helper will not)."""
        with self._cv:
            if self._broken or doc_id not in self._sent:
                return None
            if doc_id not in self._done and doc_id not in self._started:
                self._sent.pop(doc_id)
                self._outbox.put(("skip", doc_id))
                return None
            self._cv.wait_for(lambda: doc_id in self._done or self._broken)
            self._sent.pop(doc_id)
            self._loaded.pop(doc_id, None)
            got = self._done.pop(doc_id, None)
        if got is None or got[0] != heads or got[1] is None:
            return None
        return got[1], got[2]

    def close(self) -> None:
        self._outbox.put(("stop",))
        self._outbox.put(None)
        try:
            self._proc.wait(STOP_WAIT)
        except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: it is stuck
            self._proc.kill()
            self._proc.wait()
        for thread in self._threads:
            thread.join(STOP_WAIT)
        self._out.close()
        self._conn.close()


_active: Prefetch | None = None


@contextmanager
def prefetching(enabled: bool = True) -> Iterator[Prefetch | None]:
    """A helper process for the duration of one big import (None when not enabled, or
    when no process can be started: the import then reads everything itself)."""
    global _active
    if not enabled or _active is not None:
        yield None
        return
    try:
        _active = Prefetch()
    except (OSError, ValueError):  # no interpreter to run, no process or pipe left
        yield None
        return
    try:
        yield _active
    finally:
        helper, _active = _active, None
        helper.close()


def take(doc_id: bytes, heads: list[bytes]) -> tuple[dict[str, Any], int] | None:
    """The prefetched maps of a document (`Prefetch.take`), if an import is prefetching."""
    return _active.take(doc_id, heads) if _active is not None else None


PREFETCH_DOC = 256 * 1024  # saved bytes of a new document worth reading on the other core
AHEAD_BYTES = 8 * 1024 * 1024  # records read ahead of the one being applied, for the helper
# every SHARE-th such document is read in process: the helper loads and reads the others
# (the importer then neither loads nor reads them: `binding.Vouched`), the importer judges
# and stores every one, and loads and reads its share; one in four keeps both busy (1M
# posts, CPU seconds: importer 22.6, helper 22.1; one in two: 29.8 and 14.9)
SHARE = 4


class Ahead:
    """Feeds the helper process while records are applied (an import, a LAN sync):
    starts it at the first new document big enough to be worth it, on a machine
    with a second core (small imports never start a process), reads records ahead
    and hands each new owner's line over as soon as it is read."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.stack = ExitStack()
        self.prefetch: Prefetch | None = None
        self.useful = (os.cpu_count() or 1) > 1
        self.eligible = 0

    def offer(self, record: dict) -> bool:
        """Hand a new owner's line to the helper as soon as its record is read, before
        this process loads it (so the helper is a document ahead); True when the
        record's bytes were priced here (`binding.check_inflation`, always before the
        helper sees them), so `from_record` need not price them again."""
        data, owner, doc, kind = (record.get(k) for k in ("data", "owner", "doc", "kind"))
        if not self.useful or record.get("enc") != "save" or kind not in READ:
            return False
        if not (isinstance(data, bytes) and isinstance(owner, bytes) and isinstance(doc, bytes)):
            return False
        if len(data) < PREFETCH_DOC or self.home.docs.heads(doc):
            return False
        try:
            binding.check_inflation(data)
        except DamagedData:
            return False  # `from_record` prices it again and refuses it
        if amformat.line_of(data, owner) is None:
            return True  # judged change by change; read in process if at all
        self.eligible += 1
        if self.eligible % SHARE == 0:
            return True  # read in process: both processes keep reading (see SHARE)
        if self.prefetch is None:
            self.prefetch = self.stack.enter_context(prefetching())
            if self.prefetch is None:
                self.useful = False  # another import here has one, or none could start
                return True
        self.prefetch.submit(doc, str(kind), data)
        return True

    def loaded(self, record: dict) -> list[bytes] | None:
        """The heads the helper loaded this record's document with, if it did
        (`Prefetch.loaded`): then this process need not load it."""
        doc, data = record.get("doc"), record.get("data")
        if self.prefetch is None or not isinstance(doc, bytes) or not isinstance(data, bytes):
            return None
        return self.prefetch.loaded(doc, data)

    def ahead(self, records: Iterator[dict]) -> Iterator[tuple[dict, bool]]:
        """The records in order, each with whether `offer` priced it; records are read
        up to AHEAD_BYTES ahead of the one yielded, so that the helper always has the
        next documents to read while this process loads and stores the current one."""
        buffered: deque[tuple[dict, bool, int]] = deque()
        held = 0
        for record in records:
            data = record.get("data")
            size = len(data) if isinstance(data, bytes) else 1024
            buffered.append((record, record.get("t") == "doc" and self.offer(record), size))
            held += size
            while held > AHEAD_BYTES:
                got, priced, size = buffered.popleft()
                held -= size
                yield got, priced
        while buffered:
            got, priced, _ = buffered.popleft()
            yield got, priced

    def __enter__(self) -> Ahead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()


def serve() -> None:
    """The helper process's entry point: requests on stdin, results on stdout."""
    from multiprocessing.connection import Connection

    _serve(Connection(0, writable=False), Connection(1, readable=False))
