"""How much loading Automerge bytes would cost, computed before the binding sees them.

The binding trusts its input's compression: a deflated column inflates
without limit and a run-length column says "this value, 2^40 times" in a few
bytes, so a 95 KB `save` record can become hundreds of megabytes once loaded.
`check` walks the chunks of the binary format (Automerge's "binary format
spec": document chunks, change chunks and deflated change chunks), inflates
every compressed part under a cap, and counts the rows every run-length,
delta and boolean column expands to, without materialising any of them. The
result is an upper bound on what loading allocates; when it exceeds the
budget (`FIXED_BUDGET` plus `SIZE_FACTOR` times the input size) the bytes are
refused with `AutomergeBomb` before any allocation by the binding.

Only lengths are judged here: a chunk this module accepts may still be
refused by Automerge for other reasons (bad checksum, missing dependencies).
Malformed framing raises `AutomergeMalformed`. The format is specified in
docs/core-model.md ("Bounded inflation").
"""

from __future__ import annotations

import functools
import re
import zlib
from dataclasses import dataclass

from p2p import leb128
from p2p.chunk import ChunkError, parse_one
from p2p.errors import AutomergeBomb, AutomergeFormatError, AutomergeMalformed

MAGIC = b"\x85\x6f\x4a\x83"
DOCUMENT, CHANGE, DEFLATED_CHANGE = 0, 1, 2

# Memory the binding keeps per decoded op and per change, measured on
# automerge 0.2.0.dev4 (peak RSS of `Document.load`: ~91 B per op of a list,
# ~1.1 KB per change with its op; bench/bench_amformat.py), rounded up.
OP_COST = 128
CHANGE_COST = 1536
# An inflated byte is held about six times over while it loads (a 50 MB string
# peaked at +282 MB RSS, a 10 MB one at +62 MB: bench/bench_hostile.py), so it
# is charged six times: what passes the budget is what loading really costs.
BYTE_COST = 6
FIXED_BUDGET = 64 * 1024 * 1024  # what any document may cost, however small
# ... plus this many times its own size: honest feeds cost ~45x their saved
# size once loaded, documents of many one-op changes up to ~100x.
SIZE_FACTOR = 128

# column value types (low 3 bits of a column spec)
GROUP, ACTOR, ULEB, DELTA, BOOLEAN, STRING, VALUE_META, VALUE_RAW = range(8)
DEFLATE_BIT = 0x08


@dataclass
class Cost:
    """What loading would allocate: inflated bytes and decoded rows."""

    inflated: int = 0  # bytes of chunk and column data after inflation
    ops: int = 0  # rows of the op columns
    changes: int = 0  # rows of a document's change columns, plus one per change chunk
    chunks: int = 0

    @property
    def estimate(self) -> int:
        return BYTE_COST * self.inflated + OP_COST * self.ops + CHANGE_COST * self.changes


def budget_for(size: int) -> int:
    """The most that input of `size` bytes may cost to load."""
    return FIXED_BUDGET + SIZE_FACTOR * size


def check(data: bytes, budget: int | None = None) -> Cost:
    """The cost of loading `data` (chunks as `Document.load` accepts them).

    Raises `AutomergeBomb` as soon as the running estimate passes `budget`
    (default `budget_for(len(data))`), `AutomergeMalformed` on bad framing."""
    walker = _Walker(budget_for(len(data)) if budget is None else budget)
    pos = 0
    view = memoryview(data)
    while pos < len(data):
        pos = walker.chunk(view, pos)
    return walker.cost


# --- reading integers -----------------------------------------------------------


def _uleb(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    return leb128.uleb(buf, pos, end, AutomergeMalformed)


def _sleb(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    return leb128.sleb(buf, pos, end, AutomergeMalformed)


_LEB = re.compile(rb"[\x80-\xff]{0,9}[\x00-\x7f]")
_STEP = 4096


@functools.lru_cache(maxsize=256)
def _skipper(count: int) -> re.Pattern[bytes]:
    return re.compile(rb"(?:[\x80-\xff]{0,9}[\x00-\x7f]){%d}" % count)


def _skip(data: memoryview, pos: int, count: int) -> int:
    """The offset after `count` LEB128 integers from `pos` (matched in C)."""
    while count > 0:
        step = min(count, _STEP)
        found = _skipper(step).match(data, pos)
        if found is None:
            raise AutomergeMalformed("truncated column")
        pos, count = found.end(), count - step
    return pos


def _next(data: memoryview, pos: int) -> tuple[bytes, int]:
    found = _LEB.match(data, pos)
    if found is None:
        raise AutomergeMalformed("truncated integer")
    return found.group(), found.end()


def _int(data: memoryview, pos: int, end: int, signed: bool = False) -> tuple[int, int]:
    """One LEB128 integer and the offset after it; a one-byte integer (most run
    headers and values) without the regular expression."""
    if pos < end:
        byte = data[pos]
        if byte < 0x80:
            return (byte - 0x80 if signed and byte & 0x40 else byte), pos + 1
    tok, pos = _next(data, pos)
    return _dec(tok, signed), pos


def _dec(tok: bytes, signed: bool = False) -> int:
    if len(tok) == 1:
        value = tok[0]
        return value - 0x80 if signed and value & 0x40 else value
    value = 0
    for i, byte in enumerate(tok):
        value |= (byte & 0x7F) << (7 * i)
    if signed and tok[-1] & 0x40:
        value -= 1 << (7 * len(tok))
    return value


def _specs(buf: memoryview, pos: int, end: int) -> tuple[list[tuple[int, int]], int]:
    """A block's column list: (spec, data length) per column, and the offset after it."""
    count, pos = _uleb(buf, pos, end)
    if count > end - pos:
        raise AutomergeMalformed("bad column list")
    specs = []
    for _ in range(count):
        spec, pos = _uleb(buf, pos, end)
        size, pos = _uleb(buf, pos, end)
        specs.append((spec, size))
    return specs, pos


# --- the walk -------------------------------------------------------------------


class _Walker:
    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.cost = Cost()

    def _charge(self, inflated: int = 0, ops: int = 0, changes: int = 0) -> None:
        self.cost.inflated += inflated
        self.cost.ops += ops
        self.cost.changes += changes
        if self.cost.estimate > self.budget:
            raise AutomergeBomb()

    def _room(self) -> int:
        """Bytes that may still be inflated before the budget is passed."""
        return max(0, self.budget - self.cost.estimate) // BYTE_COST

    def inflate(self, data: memoryview) -> bytes:
        """Raw deflate, stopped one byte past the remaining budget."""
        room = self._room()
        inflater = zlib.decompressobj(-15)
        try:
            out = inflater.decompress(data, room + 1)
        except zlib.error as exc:
            raise AutomergeMalformed("bad compressed data") from exc
        if len(out) > room or inflater.unconsumed_tail:
            raise AutomergeBomb()
        self._charge(inflated=len(out))
        return out

    def inflated_size(self, data: memoryview) -> int:
        """Raw deflate, counted 1 MiB at a time and thrown away (charged as it goes)."""
        inflater = zlib.decompressobj(-15)
        total, pending = 0, bytes(data)
        try:
            while pending and not inflater.eof:
                out = inflater.decompress(pending, 1 << 20)
                pending = inflater.unconsumed_tail
                total += len(out)
                self._charge(inflated=len(out))
                if not out and pending:
                    break  # no progress: damaged data
        except zlib.error as exc:
            raise AutomergeMalformed("bad compressed data") from exc
        return total

    def chunk(self, buf: memoryview, pos: int) -> int:
        end = len(buf)
        if bytes(buf[pos : pos + 4]) != MAGIC:
            raise AutomergeMalformed("not an Automerge chunk")
        if pos + 9 > end:
            raise AutomergeMalformed("truncated chunk header")
        kind = buf[pos + 8]
        length, body = _uleb(buf, pos + 9, end)
        stop = body + length
        if stop > end:
            raise AutomergeMalformed("truncated chunk")
        self.cost.chunks += 1
        self._charge(inflated=length)
        if kind == DOCUMENT:
            self.document(buf, body, stop)
        elif kind == CHANGE:
            self.change(buf, body, stop)
        elif kind == DEFLATED_CHANGE:
            inner = memoryview(self.inflate(buf[body:stop]))
            self.change(inner, 0, len(inner))
        else:
            raise AutomergeMalformed("unknown chunk type")
        return stop

    def _actors(self, buf: memoryview, pos: int, end: int) -> int:
        count, pos = _uleb(buf, pos, end)
        if count > end - pos:
            raise AutomergeMalformed("bad actor list")
        self._charge(inflated=count)
        for _ in range(count):
            size, pos = _uleb(buf, pos, end)
            pos += size
            if pos > end:
                raise AutomergeMalformed("bad actor list")
        return pos

    def _columns(
        self, buf: memoryview, specs: list[tuple[int, int]], pos: int, end: int, changes: bool
    ) -> int:
        """Read one block of columns; charge its longest column's rows (the rows
        of a block are read in lock step, one op or change per row)."""
        longest = 0
        for spec, size in specs:
            if pos + size > end:
                raise AutomergeMalformed("column runs past its chunk")
            data = buf[pos : pos + size]
            pos += size
            if spec & DEFLATE_BIT and spec & 0x07 == VALUE_RAW:
                self.inflated_size(data)  # plain bytes: counted, never kept
                continue
            if spec & DEFLATE_BIT:
                data = memoryview(self.inflate(data))
            rows = self.column(spec & 0x07, data)
            if rows > longest:
                extra = rows - longest
                self._charge(ops=0 if changes else extra, changes=extra if changes else 0)
                longest = rows
        return pos

    def document(self, buf: memoryview, pos: int, end: int) -> None:
        pos = self._actors(buf, pos, end)
        heads, pos = _uleb(buf, pos, end)
        if heads > (end - pos) // 32:
            raise AutomergeMalformed("bad head list")
        pos += 32 * heads
        change_specs, pos = _specs(buf, pos, end)
        op_specs, pos = _specs(buf, pos, end)
        pos = self._columns(buf, change_specs, pos, end, changes=True)
        self._columns(buf, op_specs, pos, end, changes=False)

    def change(self, buf: memoryview, pos: int, end: int) -> None:
        deps, pos = _uleb(buf, pos, end)
        if deps > (end - pos) // 32:
            raise AutomergeMalformed("bad dependency list")
        pos += 32 * deps
        size, pos = _uleb(buf, pos, end)  # author
        pos += size
        _seq, pos = _uleb(buf, pos, end)
        _start, pos = _uleb(buf, pos, end)
        _time, pos = _sleb(buf, pos, end)
        size, pos = _uleb(buf, pos, end)  # message
        pos += size
        if pos > end:
            raise AutomergeMalformed("truncated change")
        pos = self._actors(buf, pos, end)
        specs, pos = _specs(buf, pos, end)
        self._charge(changes=1)
        self._columns(buf, specs, pos, end, changes=False)

    def column(self, kind: int, data: memoryview) -> int:
        """How many values the column decodes to (for a group column, also the
        total its counts announce for the grouped columns, whichever is more)."""
        if kind == VALUE_RAW:
            return 0  # plain bytes, already counted as bytes
        if kind == STRING:
            return self._strings(data)
        limit = self.budget // OP_COST + 1
        if kind == BOOLEAN:
            toks = _LEB.findall(data)
            if sum(map(len, toks)) != len(data):
                raise AutomergeMalformed("truncated boolean column")
            return sum(t[0] if len(t) == 1 else _dec(t) for t in toks)
        # every other type: runs whose header and values are one LEB128 each
        pos, end, rows, grouped = 0, len(data), 0, 0
        while pos < end and rows <= limit and grouped <= limit:
            run, pos = _int(data, pos, end, signed=True)
            if run < 0:  # literal values
                if kind == GROUP:
                    for _ in range(-run):
                        value, pos = _int(data, pos, end)
                        grouped += value
                else:
                    pos = _skip(data, pos, -run)
                rows -= run
                continue
            if run > 0 and kind != GROUP:  # one value, repeated: only its length matters
                start = pos
                while pos < end and data[pos] & 0x80 and pos - start < 9:
                    pos += 1
                if pos >= end or data[pos] & 0x80:
                    raise AutomergeMalformed("truncated integer")
                pos += 1
                rows += run
                continue
            value, pos = _int(data, pos, end)
            if run > 0:  # one value, repeated
                rows += run
                grouped += run * value
            else:  # nulls
                rows += value
        return max(rows, grouped)

    def _strings(self, data: memoryview) -> int:
        """Rows of a run-length column of length-prefixed strings."""
        end, pos, rows = len(data), 0, 0
        limit = self.budget // OP_COST + 1
        while pos < end and rows <= limit:
            run, pos = _sleb(data, pos, end)
            if run == 0:
                count, pos = _uleb(data, pos, end)
                rows += count
                continue
            for _ in range(1 if run > 0 else -run):
                size = data[pos] if pos < end else 0x80
                if size < 0x80:
                    pos += 1 + size
                else:
                    size, pos = _uleb(data, pos, end)
                    pos += size
                if pos > end:
                    raise AutomergeMalformed("truncated string")
            rows += abs(run)
        return rows


# --- one author's line ------------------------------------------------------------

# change columns of a document chunk (spec = column id << 4 | type, deflate bit cleared)
_CHANGE_ACTOR, _CHANGE_SEQ, _DEPS_NUM, _DEPS_INDEX = 0x01, 0x03, 0x40, 0x43
_LINE_RUNS = 16  # an honest line encodes each of these columns in one to three runs
_LINE_COLUMN = 4096  # ... in a few bytes; anything longer is judged the usual way


def line_of(data: bytes, actor: bytes) -> tuple[int, bytes] | None:
    """(n, last hash), when `data` (a saved document, then any log of changes, as a
    store keeps it) holds n changes that are all `actor`'s, numbered 1, 2 ... n, each
    depending on exactly the one before; None for anything else (which is then
    judged change by change).

    A document chunk is read from its change columns alone, never from its ops:
    Automerge encodes each of these columns of an honest one-author document in a
    few run-length runs, so this costs microseconds where listing the changes costs
    seconds. What is read is what Automerge reads: `Document.load` rebuilds every
    change from the same columns and refuses the bytes unless the hashes it computes
    match the heads the chunk names, and the changes after it name their
    dependencies by hash (docs/core-model.md, "One author's line"). Raises nothing."""
    try:
        return _line_of(data, actor)
    except (AutomergeFormatError, ChunkError, IndexError, ValueError, zlib.error):
        return None


def _line_of(data: bytes, actor: bytes) -> tuple[int, bytes] | None:
    buf = memoryview(data)
    end, n, head, pos = len(buf), 0, b"", 0
    if end >= 9 and bytes(buf[0:4]) == MAGIC and buf[8] == DOCUMENT:
        length, body = _uleb(buf, 9, end)
        if body + length > end:
            return None
        got = _document_line(buf[body : body + length], actor)
        if got is None:
            return None
        n, head = got
        pos = body + length
    while pos < end:  # the log: change chunks, each the next of the line
        change, pos = parse_one(data, pos)
        if change.actor != actor or change.seq != n + 1 or change.deps != ((head,) if n else ()):
            return None
        n, head = n + 1, change.hash
    return (n, head) if n else None


def _document_line(buf: memoryview, actor: bytes) -> tuple[int, bytes] | None:
    end = len(buf)
    count, pos = _uleb(buf, 0, end)
    if count != 1:
        return None
    size, pos = _uleb(buf, pos, end)
    if bytes(buf[pos : pos + size]) != actor:
        return None
    pos += size
    heads, pos = _uleb(buf, pos, end)
    if heads != 1 or pos + 32 > end:
        return None
    head = bytes(buf[pos : pos + 32])
    pos += 32
    specs, pos = _specs(buf, pos, end)
    _ops, pos = _specs(buf, pos, end)  # op columns: their specs come before any data
    columns: dict[int, bytes] = {}
    for spec, size in specs:
        if pos + size > end:
            return None
        raw = bytes(buf[pos : pos + size])
        pos += size
        plain = spec & ~DEFLATE_BIT
        if plain in columns:
            return None
        if plain in (_CHANGE_ACTOR, _CHANGE_SEQ, _DEPS_NUM, _DEPS_INDEX):
            if size > _LINE_COLUMN:
                return None
            if spec & DEFLATE_BIT:
                inflater = zlib.decompressobj(-15)
                raw = inflater.decompress(raw, _LINE_COLUMN + 1)
                if len(raw) > _LINE_COLUMN or not inflater.eof:
                    return None
            columns[plain] = raw
    actors = _line_runs(columns.get(_CHANGE_ACTOR, b""), signed=False)
    seqs = _line_runs(columns.get(_CHANGE_SEQ, b""), signed=True)
    deps = _line_runs(columns.get(_DEPS_NUM, b""), signed=False)
    index = _line_runs(columns.get(_DEPS_INDEX, b""), signed=True)
    if actors is None or seqs is None or deps is None or index is None:
        return None
    n = sum(c for c, _ in actors)
    if n < 1:
        return None
    ok = (
        _follows(actors, 0, 0, n)  # every change by the one actor
        and _follows(seqs, 1, 1, n)  # seq deltas: 1, 2, ... n
        and _follows(deps, 0, 1, n)  # no dependency, then one each
        and _follows(index, 0, 1, n - 1)  # on change 0, 1, ... n - 2 (delta coded)
    )
    return (n, head) if ok else None


def _line_runs(data: bytes, signed: bool) -> list[tuple[int, int]] | None:
    """(count, value) runs of a run-length column; None when it holds a null, is
    malformed, or takes more than a handful of runs."""
    view, pos, end = memoryview(data), 0, len(data)
    runs: list[tuple[int, int]] = []
    read = _sleb if signed else _uleb
    while pos < end:
        run, pos = _sleb(view, pos, end)
        if run == 0:
            return None  # nulls
        if run > 0:
            value, pos = read(view, pos, end)
            runs.append((run, value))
        else:
            for _ in range(-run):
                value, pos = read(view, pos, end)
                runs.append((1, value))
                if len(runs) > _LINE_RUNS:
                    return None
        if len(runs) > _LINE_RUNS:
            return None
    return runs


def _follows(runs: list[tuple[int, int]], first: int, rest: int, total: int) -> bool:
    """The runs spell `first` then `total - 1` times `rest` (nothing when total is 0)."""
    seen = 0
    for count, value in runs:
        if seen == 0 and value != first:
            return False
        if (seen > 0 or count > 1) and value != rest:
            return False
        seen += count
    return seen == total
