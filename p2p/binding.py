"""The one boundary between outside bytes and the Automerge binding.

The binding reports some malformed input with a Rust panic, which reaches
Python as `pyo3_runtime.PanicException`, a `BaseException` that `except
Exception` lets through. Every call that hands bytes from outside (or bytes a
hostile member once got stored) to the binding goes through here, and any
failure becomes `DamagedData` for that one document or change, so no remote
input can end a command in a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from automerge.core import Document

from p2p import amformat
from p2p.chunk import RawChange
from p2p.errors import AutomergeFormatError, DamagedData

T = TypeVar("T")

# Before the binding sees a saved document or a change, `p2p.amformat` prices
# it from the bytes alone (deflated columns, run-length encoded op counts):
# what would inflate past its budget (a fixed 64 MiB + 128 x its size) is
# refused before anything is allocated.
MAX_RAW = 64 * 1024 * 1024

_FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)


def call(what: str, fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)`, with any failure of the binding turned into `DamagedData`."""
    try:
        return fn(*args)
    except _FATAL:
        raise
    except DamagedData:
        raise
    except BaseException as exc:  # noqa: BLE001 - Rust panics are BaseException
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise DamagedData(f"{what} ({detail})") from None


def check_inflation(data: bytes) -> None:
    """Refuse bytes that would inflate far past their size inside the binding."""
    if len(data) > MAX_RAW:
        raise DamagedData("document data larger than allowed")
    try:
        amformat.check(data)
    except AutomergeFormatError as exc:
        raise DamagedData(str(exc)) from None


def load(data: bytes, what: str = "document does not load", *, outside: bool = True) -> Document:
    """`Document.load` of outside bytes (priced first) or of our own stored bytes."""
    if outside:
        check_inflation(data)
    return call(what, Document.load, data)


class Vouched:
    """Saved bytes of a document that our own prefetch process (p2p/index/prefetch.py)
    loaded: `Document.load` refused them unless every change's hash matched the heads
    they name, and the process reported those heads. Why: loading a 20k-post feed
    costs 0.2 s, and a big import had both processes load each one. This process
    loads the bytes only if something asks for more than the heads (any attribute
    of `Document` other than `get_heads`)."""

    __slots__ = ("data", "_heads", "_doc")

    def __init__(self, data: bytes, heads: list[bytes]) -> None:
        self.data, self._heads = data, list(heads)
        self._doc: Document | None = None

    def get_heads(self) -> list[bytes]:
        return list(self._heads)

    def __getattr__(self, name: str) -> object:
        if self._doc is None:
            self._doc = load(self.data, outside=False)
        return getattr(self._doc, name)


def save(doc: Document) -> bytes:
    return call("document does not save", doc.save)


def changes(doc: Document, since: Iterable[bytes] = ()) -> list[RawChange]:
    """Every change of `doc` after `since`, in causal order, in our parsed form."""

    def get() -> list[RawChange]:
        return [
            RawChange(c.hash, c.actor_id, c.seq, tuple(c.deps), c.raw_bytes)
            for c in doc.get_changes(list(since))
        ]

    return call("document changes could not be read", get)


def reloads(data: bytes) -> Document:
    """Load saved bytes we are about to commit: what we store must load again."""
    return load(data, "the document would not load again after these changes", outside=False)
