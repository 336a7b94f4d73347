"""Bounded inflation: `amformat.check` prices Automerge bytes before the binding loads them."""

from __future__ import annotations

import hashlib
import os
import zlib

import pytest
from automerge.core import ROOT, Document, ObjType, ScalarType
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p import amformat
from p2p.errors import AutomergeBomb, AutomergeFormatError, AutomergeMalformed


def uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def sleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def chunk(kind: int, body: bytes) -> bytes:
    """A chunk with a correct checksum, as Automerge would accept its framing."""
    head = bytes([kind]) + uleb(len(body))
    return amformat.MAGIC + hashlib.sha256(head + body).digest()[:4] + head + body


def change_body(columns: list[tuple[int, bytes]]) -> bytes:
    actor = b"\x01" * 32
    body = uleb(0) + uleb(len(actor)) + actor + uleb(1) + uleb(1) + sleb(0) + uleb(0) + uleb(0)
    body += uleb(len(columns)) + b"".join(uleb(spec) + uleb(len(d)) for spec, d in columns)
    return body + b"".join(d for _, d in columns)


def list_bomb(n: int) -> bytes:
    """A real document saved by Automerge: n identical list elements."""
    doc = Document()
    with doc.transaction() as tx:
        items = tx.put_object(ROOT, "l", ObjType.List)
        for i in range(n):
            tx.insert(items, i, ScalarType.Int, 1)
    return doc.save()


def honest_feed(posts: int) -> bytes:
    doc = Document(actor_id=os.urandom(32))
    with doc.transaction() as tx:
        root = tx.put_object(ROOT, "posts", ObjType.Map)
    for i in range(posts):
        with doc.transaction() as tx:
            p = tx.put_object(root, os.urandom(8).hex(), ObjType.Map)
            tx.put(p, "text", ScalarType.Str, f"post number {i} about the water point")
            tx.put(p, "ts", ScalarType.Int, 1_700_000_000_000 + 60_000 * i)
    return doc.save()


def test_a_document_saved_by_automerge_with_many_identical_ops_is_priced_by_its_ops():
    data = list_bomb(50_000)
    assert len(data) < 2000  # a few hundred bytes of run-length columns...
    cost = amformat.check(data, budget=1 << 40)
    assert cost.ops >= 50_000  # ...announce 50k ops
    with pytest.raises(AutomergeBomb):
        amformat.check(data, budget=4 * 1024 * 1024)


def test_honest_documents_pass_with_an_estimate_above_their_size():
    data = honest_feed(2000)
    cost = amformat.check(data)
    assert cost.ops >= 3 * 2000 and cost.changes >= 2000
    assert cost.estimate > len(data)
    assert cost.estimate < amformat.budget_for(len(data))
    # the document and a log of change chunks after it, as the store keeps them
    doc = Document.load(data)
    with doc.transaction() as tx:
        tx.put(ROOT, "x", ScalarType.Int, 1)
    log = doc.get_last_local_change().raw_bytes
    both = amformat.check(data + log)
    assert both.chunks == 2 and both.changes == cost.changes + 1


def test_a_hand_made_run_of_a_trillion_ops_is_refused_without_allocating():
    column = sleb(10**12) + uleb(0)  # "actor 0, a trillion times"
    data = chunk(1, change_body([(0x01, column)]))
    with pytest.raises(AutomergeBomb):
        amformat.check(data)


@pytest.mark.parametrize("kind", [amformat.BOOLEAN, amformat.DELTA, amformat.STRING])
def test_every_run_length_column_type_is_counted(kind: int):
    if kind == amformat.BOOLEAN:
        column = uleb(10**12)
    elif kind == amformat.STRING:
        column = sleb(10**12) + uleb(3) + b"abc"
    else:
        column = sleb(-1) + sleb(5) + uleb(0) + uleb(10**12)  # a literal, then nulls
    data = chunk(1, change_body([(0x10 | kind, column)]))
    with pytest.raises(AutomergeBomb):
        amformat.check(data)


def test_a_group_column_announcing_huge_groups_is_refused():
    column = sleb(1000) + uleb(10**10)  # 1000 ops with 10^10 successors each
    data = chunk(1, change_body([(0x80, column)]))
    with pytest.raises(AutomergeBomb):
        amformat.check(data)


def test_a_deflated_column_is_inflated_under_a_cap():
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    mib = bytes(1 << 20)
    packed = b"".join(packer.compress(mib) for _ in range(256)) + packer.flush()
    assert len(packed) < 300_000  # 256 MiB of zeros
    data = chunk(1, change_body([(0x5F, packed)]))  # value-raw column, deflate bit set
    with pytest.raises(AutomergeBomb):
        amformat.check(data)
    # the same bytes as a deflated change chunk (type 2)
    with pytest.raises(AutomergeBomb):
        amformat.check(chunk(2, packed))


def test_small_honest_deflated_data_passes():
    column = zlib.compress(b"hello" * 100)[2:-4]  # raw deflate
    data = chunk(1, change_body([(0x5F, column)]))
    assert amformat.check(data).inflated >= 500


@pytest.mark.parametrize(
    "data",
    [
        b"\x85\x6f\x4a\x83",
        b"not automerge at all",
        amformat.MAGIC + b"\0\0\0\0\x07\x00",  # unknown chunk type
        amformat.MAGIC + b"\0\0\0\0\x01\xff\xff\xff\x7f",  # longer than the data
    ],
)
def test_bad_framing_is_our_own_error(data: bytes):
    with pytest.raises(AutomergeMalformed):
        amformat.check(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_damage_to_a_real_document_gives_our_error_or_a_cost(data):
    real = _REAL
    pos = data.draw(st.integers(0, len(real) - 1))
    junk = data.draw(st.binary(min_size=1, max_size=8))
    damaged = real[:pos] + junk + real[pos + len(junk) :]
    cut = data.draw(st.integers(0, len(damaged)))
    try:
        cost = amformat.check(damaged[:cut] if data.draw(st.booleans()) else damaged)
    except AutomergeFormatError:
        return
    assert cost.estimate <= amformat.budget_for(len(damaged))


_REAL = honest_feed(30)
