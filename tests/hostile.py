"""A hostile member's toolkit: validly signed but hostile changes, made with our own keys.

Everything here is what a member with a modified client can produce: they hold
a real key, so every change below carries a real signature of its author. The
tests (tests/test_hostile_*.py) hand these to the real acceptance path, the
real CLI (through doctored bundles re-signed by the member) and a real LAN
session (a member's `p2p serve` that lies), and check that the attack is
refused or confined to the attacker's own documents.

API (all return real bytes, nothing is mocked):
- `change(home, ref, edit, on=None)`: a real change by `home`'s key on top of
  its copy of `ref` (or of the heads `on`), with its signature.
- `reframe(data, seq=, deps=, start_op=, body=)`: the same change chunk with a
  rewritten header or body, checksum recomputed (a new hash, so sign it anew).
- `sign(home, ref, data)`: parse chunk bytes and sign them as `home`.
- `gap`, `no_prev_dep`, `wrong_deps`, `garbage_body`,
  `truncated`, `fork_pair`: the
  structural attacks, each returning `(changes, sigs)`.
- `bomb_save(size, home, ref)`, `bomb_sigs(...)`: a signed saved document
  whose compressed columns inflate to `size` bytes (a bomb as a `save` record).
- `backdated_hide(demoted, community, post_id, old_heads)`: a moderation change
  built on the member's pre-demotion history.
- `ESCAPES`, `ODD_POSTS`, `odd_posts(home, ref)`: member text and values
  (wrong types, huge numbers, a list where a map belongs) for the views and
  the terminal.
- `record(ref, changes, sigs)`, `save_record(ref, data, sigs)`: bundle/LAN `doc` records.
- `doctor_bundle(src, dst, identity, extra=(), drop=None)`: a bundle written by
  our export code, records added or removed, re-signed by `identity`.
- `lying_server(home, records)`: argv for a real `p2p serve` whose answers
  carry `records` besides the honest ones (a lying peer on the LAN).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgpack
from automerge.core import ROOT, Document, ObjType, ScalarType

from p2p import signing
from p2p.chunk import MAGIC, RawChange, _uleb, parse_one
from p2p.docref import DocRef
from p2p.documents import as_raw
from p2p.home import Home
from p2p.identity import Identity

Signed = tuple[list[RawChange], list[signing.Sig]]

ESCAPES = [
    "\x1b[2J\x1b[H",  # clear the screen
    "\x1b]0;owned\x07",  # window title
    "\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07",  # hyperlink
    "\u202eevil\u202c",  # bidi override
    "[bold red]markup[/]",  # rich markup
    "\r\nAlice (AAAA-BBBB-CCCC-DDDD) wrote:\n  forged header",  # a forged header line
]

# values a member can sign into their own feed that a view must survive
ODD_POSTS: dict[str, Any] = {
    "ts_string": {"text": "a", "ts": "yesterday"},
    "ts_huge": {"text": "b", "ts": 2**62},
    "ts_negative": {"text": "c", "ts": -5},
    "text_int": {"text": 42, "ts": 1},
    "parent_self": {"text": "d", "ts": 1, "parent": "self"},
}


def _uleb_bytes(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _fields(data: bytes) -> tuple[list[bytes], bytes, int, int, bytes]:
    length, body = _uleb(data, 9, len(data))
    b = data[body : body + length]
    p = 0
    nd, p = _uleb(b, p, len(b))
    deps = [b[p + 32 * i : p + 32 * (i + 1)] for i in range(nd)]
    p += 32 * nd
    alen, p = _uleb(b, p, len(b))
    actor = b[p : p + alen]
    p += alen
    seq, p = _uleb(b, p, len(b))
    start_op, p = _uleb(b, p, len(b))
    return deps, actor, seq, start_op, b[p:]


def reframe(
    data: bytes,
    *,
    seq: int | None = None,
    deps: list[bytes] | None = None,
    start_op: int | None = None,
    body: bytes | None = None,
) -> bytes:
    """`data` (one change chunk) with fields replaced and a valid checksum."""
    odeps, actor, oseq, ostart, rest = _fields(data)
    deps = odeps if deps is None else deps
    new = (
        _uleb_bytes(len(deps))
        + b"".join(deps)
        + _uleb_bytes(len(actor))
        + actor
        + _uleb_bytes(oseq if seq is None else seq)
        + _uleb_bytes(ostart if start_op is None else start_op)
        + (rest if body is None else body)
    )
    chunk = bytes([1]) + _uleb_bytes(len(new)) + new
    return MAGIC + hashlib.sha256(chunk).digest()[:4] + chunk


def sign(home: Home, ref: DocRef, data: bytes) -> tuple[RawChange, signing.Sig]:
    c = parse_one(data)[0]
    return c, signing.sign(home.identity, ref.id, c.hash)


def _doc(home: Home, ref: DocRef, on: list[bytes] | None = None) -> Document:
    data = home.docs.data(ref.id)
    doc = Document.load(data) if data else Document()
    if on is not None:
        doc = doc.fork_at(on)
    doc.set_actor(home.public_key)
    return doc


def change(
    home: Home,
    ref: DocRef,
    edit: Callable[[Document, Any], None],
    on: list[bytes] | None = None,
) -> tuple[RawChange, signing.Sig]:
    """A real change by `home` on its copy of `ref` (at heads `on`), signed by `home`."""
    doc = _doc(home, ref, on)
    with doc.transaction() as tx:
        edit(doc, tx)
    c = as_raw(doc.get_last_local_change())
    return c, signing.sign(home.identity, ref.id, c.hash)


def chain(home: Home, ref: DocRef, n: int, key: str = "x") -> list[tuple[RawChange, signing.Sig]]:
    """`n` consecutive real changes by `home` on top of its copy of `ref`."""
    doc = _doc(home, ref)
    out = []
    for i in range(n):
        with doc.transaction() as tx:
            tx.put(ROOT, f"{key}{i}", ScalarType.Str, f"value {i}")
        c = as_raw(doc.get_last_local_change())
        out.append((c, signing.sign(home.identity, ref.id, c.hash)))
    return out


def odd_posts(home: Home, ref: DocRef) -> tuple[RawChange, signing.Sig]:
    """A signed change putting `ODD_POSTS` (wrong types, huge and negative
    numbers) into the author's own feed, beside a `reactions` that is a list."""

    def edit(doc: Document, tx: Any) -> None:
        got = doc.get(ROOT, "posts")
        posts = got[1] if got else tx.put_object(ROOT, "posts", ObjType.Map)
        for local_id, fields in ODD_POSTS.items():
            p = tx.put_object(posts, local_id, ObjType.Map)
            for key, value in fields.items():
                kind = ScalarType.Int if isinstance(value, int) else ScalarType.Str
                tx.put(p, key, kind, value)
        tx.put_object(ROOT, "reactions", ObjType.List)

    return change(home, ref, edit)


def _put(key: str, value: str = "hostile") -> Callable[[Document, Any], None]:
    return lambda d, tx: tx.put(ROOT, key, ScalarType.Str, value)


def gap(home: Home, ref: DocRef) -> Signed:
    """A change whose sequence number skips ahead by 3."""
    c, _ = change(home, ref, _put("gap"))
    bad, sig = sign(home, ref, reframe(c.data, seq=c.seq + 3))
    return [bad], [sig]


def no_prev_dep(home: Home, ref: DocRef) -> Signed:
    """A change that claims no dependencies although its author wrote before
    (it loads once, and its saved document never loads again)."""
    c, _ = change(home, ref, _put("nodeps"))
    bad, sig = sign(home, ref, reframe(c.data, deps=[]))
    return [bad], [sig]


def wrong_deps(home: Home, ref: DocRef) -> Signed:
    """A change that depends on a change nobody has (it can only wait)."""
    c, _ = change(home, ref, _put("wrongdeps"))
    bad, sig = sign(home, ref, reframe(c.data, deps=[*c.deps, b"\x42" * 32]))
    return [bad], [sig]


def garbage_body(home: Home, ref: DocRef) -> Signed:
    """A well-formed header over a body of garbage."""
    c, _ = change(home, ref, _put("garbage"))
    bad, sig = sign(home, ref, reframe(c.data, body=b"\xff" * 40))
    return [bad], [sig]


def truncated(home: Home, ref: DocRef) -> Signed:
    """A change whose body was cut short, re-checksummed."""
    c, _ = change(home, ref, _put("truncated", "x" * 100))
    _deps, _a, _s, _o, rest = _fields(c.data)
    bad, sig = sign(home, ref, reframe(c.data, body=rest[: len(rest) // 2]))
    return [bad], [sig]


def fork_pair(home: Home, ref: DocRef) -> tuple[Signed, Signed]:
    """Two different valid changes with the same author and sequence number."""
    a = change(home, ref, _put("fork", "version A"))
    b = change(home, ref, _put("fork", "version B"))
    return ([a[0]], [a[1]]), ([b[0]], [b[1]])


def bomb_save(size: int, home: Home | None = None, ref: DocRef | None = None) -> bytes:
    """A saved document holding one string of `size` repeated bytes; the
    binding compresses its columns, so the save is tiny beside `size`.
    Written by `home`'s key when given (sign it with `bomb_sigs`)."""
    doc = Document(actor_id=home.public_key if home else b"\x01" * 32)
    with doc.transaction() as tx:
        tx.put(ROOT, "bomb", ScalarType.Str, "A" * size)
    return doc.save()


def bomb_sigs(home: Home, ref: DocRef, data: bytes) -> list[signing.Sig]:
    """`home`'s signature over the last change of a saved document it wrote."""
    last = Document.load(data).get_changes([])[-1]
    return [signing.sign(home.identity, ref.id, last.hash)]


def backdated_hide(
    demoted: Home, ref: DocRef, post_id: str, old_heads: list[bytes]
) -> tuple[RawChange, signing.Sig]:
    """A hide by a demoted moderator built on the history before their demotion."""

    def hide(doc: Document, tx: Any) -> None:
        tx.put(doc.get(ROOT, "hidden")[1], post_id, ScalarType.Int, 1)

    return change(demoted, ref, hide, on=old_heads)


def record(ref: DocRef, changes: Iterable[RawChange], sigs: Iterable[signing.Sig]) -> dict:
    return {
        "t": "doc",
        "community": ref.community,
        "kind": ref.kind,
        "owner": ref.owner,
        "doc": ref.id,
        "enc": "changes",
        "data": b"".join(c.data for c in changes),
        "sigs": [list(s) for s in sigs],
    }


def save_record(ref: DocRef, data: bytes, sigs: Iterable[signing.Sig]) -> dict:
    return {**record(ref, [], sigs), "enc": "save", "data": data}


def doctor_bundle(
    src: Path,
    dst: Path,
    identity: Identity,
    extra: Iterable[dict] = (),
    drop: Callable[[dict], bool] | None = None,
) -> None:
    """Rewrite a plain bundle written by our export code: `drop` records, add
    `extra` ones, and sign it anew as `identity` (a member's valid bundle)."""
    from p2p.bundle.container import read_all, write_bundle

    with src.open("rb") as fh:
        header, records = read_all(fh)
    kept = [r for r in records if not (drop and drop(r))]
    with dst.open("wb") as out:
        write_bundle(out, identity, [*kept, *extra], header.created)


LIAR = """
import sys
import zlib
import msgpack
from automerge.core import Document
from p2p import exchange
from p2p.cli import main as cli_main

with open(sys.argv[1], "rb") as fh:
    extra = msgpack.unpackb(fh.read())
honest = exchange.records_wanted


def changes_of(r):
    if r["enc"] == "save":
        return b"".join(c.raw_bytes for c in Document.load(r["data"]).get_changes([]))
    if r["enc"] == "changes-zlib":
        return zlib.decompress(r["data"])
    return r["data"]


def lying(home, theirs, wanted):
    lies = {}
    for r in extra:
        if r["doc"] in wanted:
            lies.setdefault(r["doc"], []).append(r)
    for r in honest(home, theirs, wanted):
        told = lies.pop(r["doc"], [])
        if told:
            data = changes_of(r) + b"".join(changes_of(x) for x in told)
            sigs = r["sigs"] + [s for x in told for s in x["sigs"]]
            r = {**r, "enc": "changes", "data": data, "sigs": sigs}
        yield r
    for told in lies.values():
        yield told[0]


exchange.records_wanted = lying
sys.argv = ["p2p", *sys.argv[2:]]
cli_main.main()
"""


def lying_server(home: Path, records: list[dict], folder: Path) -> list[str]:
    """argv of a real `p2p serve` on 127.0.0.1 whose answers carry `records`,
    besides the honest ones, for the documents a peer asks for (a member
    running a modified client)."""
    extra = folder / "lies.msgpack"
    extra.write_bytes(msgpack.packb(records, use_bin_type=True))
    script = folder / "liar.py"
    script.write_text(LIAR)
    return [
        sys.executable,
        str(script),
        str(extra),
        "--home",
        str(home),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-mdns",
        "--duration",
        "30",
        "--json",
    ]
