"""The second reading of a bundle (the one whose records are decoded) is bound to
the proven first reading by a BLAKE3 chain instead of a second SHA-256 of every
byte: a file that changes in between, even into another validly signed bundle
of the same exporter and size, imports nothing."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p import community as cm
from p2p import content, feed, invites
from p2p.bundle import container
from p2p.bundle import export as ex
from p2p.bundle.importer import import_bundle
from p2p.errors import BundleCorrupt, BundleError
from p2p.identity import Identity
from tests.helpers import dump, make_home


def _bundle(identity: Identity, records: list[dict], created: int = 1) -> bytes:
    out = io.BytesIO()
    container.write_bundle(out, identity, records, created)
    return out.getvalue()


def test_the_same_bytes_read_again_pass_and_keep_the_proven_digests() -> None:
    me = Identity.generate()
    data = _bundle(me, [{"t": "x", "n": i, "pad": b"\0" * 5000} for i in range(20)])
    stats = container.BundleReader(io.BytesIO(data)).prove()
    assert stats.chain and stats.name and stats.version == 2
    again = container.BundleReader(io.BytesIO(data), proven=stats)
    assert [r["n"] for r in again.records()] == list(range(20))
    assert again.stats.digest == stats.digest and again.stats.count == 20
    assert again.stats.name == stats.name


@pytest.mark.parametrize("where", ["body", "length", "trailer", "header"])
def test_a_changed_byte_on_the_second_reading_is_refused(where: str) -> None:
    me = Identity.generate()
    data = bytearray(_bundle(me, [{"t": "x", "blob": bytes(range(256)) * 40}] * 1))
    stats = container.BundleReader(io.BytesIO(bytes(data))).prove()
    at = {"body": len(data) // 2, "trailer": len(data) - 3, "header": 20}.get(where)
    if where == "length":  # one record shorter, the rest of the framing intact
        hlen = int.from_bytes(data[10:14], "big")
        at = 14 + hlen + 3
    data[at] ^= 1
    with pytest.raises(BundleError if where != "body" else BundleCorrupt):
        list(container.BundleReader(io.BytesIO(bytes(data)), proven=stats).records())


def test_another_valid_bundle_of_the_same_size_swapped_in_is_refused() -> None:
    me = Identity.generate()
    first = _bundle(me, [{"t": "x", "v": b"a" * 1000}])
    second = _bundle(me, [{"t": "x", "v": b"b" * 1000}])
    assert len(first) == len(second)
    stats = container.BundleReader(io.BytesIO(first)).prove()
    container.BundleReader(io.BytesIO(second)).prove()  # valid on its own
    with pytest.raises(BundleCorrupt, match="changed while it was being read"):
        list(container.BundleReader(io.BytesIO(second), proven=stats).records())


@pytest.mark.parametrize("held", [False, True])
def test_a_file_swapped_between_the_two_readings_imports_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: bool
) -> None:
    """Re-read (records over HOLD): the swap is refused. Held (records replayed
    from the proving pass's memory): what was proven is imported, never the swap."""
    alice = make_home(tmp_path / "alice", "Alice")
    bob = make_home(tmp_path / "bob", "Bob")
    c = cm.create(alice, "Village")
    invites.join(bob, invites.write(alice, c))
    content.post(alice, c, "first")
    one, two = tmp_path / "one.p2p", tmp_path / "two.p2p"
    with ex.scratch_dir(alice) as s:
        ex.place(ex.build(alice, ex.domains([c])[0], Path(s)), one)
    content.post(alice, c, "second, also signed by Alice")
    with ex.scratch_dir(alice) as s:
        ex.place(ex.build(alice, ex.domains([c])[0], Path(s)), two)
    swapped = two.read_bytes()
    real_prove = container.BundleReader.prove

    def prove_then_swap(
        self: container.BundleReader, stage: container.Stage | None = None
    ) -> container.BundleStats:
        stats = real_prove(self, stage)
        one.write_bytes(swapped)  # simulates the file changing on the stick
        return stats

    monkeypatch.setattr(container.BundleReader, "prove", prove_then_swap)
    if not held:
        monkeypatch.setattr(container, "HOLD", 0)
        before = dump(bob)
        with pytest.raises(BundleCorrupt):
            import_bundle(bob, [one])
        assert dump(bob) == before
    else:
        import_bundle(bob, [one])
        cb = next(x for x in cm.all_communities(bob) if x.id == c.id)
        texts = [p["text"] for p in feed.all_posts(bob, cb)]
        assert "first" in texts and "second, also signed by Alice" not in texts
    alice.close()
    bob.close()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 5 * 1024 * 1024), min_size=1, max_size=12))
def test_direct_stream_reads_give_exactly_what_was_asked(tmp_path_factory, sizes) -> None:
    """DirectStream (a bundle file read past the page cache, in blocks on a helper
    thread) returns exactly n bytes for read(n), fewer only at the end of the
    file, whatever n is against its blocks (a whole block is handed as it is)."""
    from p2p.bundle.source import DirectStream

    path = tmp_path_factory.mktemp("ds") / "f"
    data = os.urandom(3 * DirectStream.BLOCK + 12345)
    path.write_bytes(data)
    stream = DirectStream(path)
    try:
        at = 0
        for n in sizes + [DirectStream.BLOCK] * 4:
            got = stream.read(n)
            assert got == data[at : at + n]
            at += len(got)
        assert stream.read(1) == b"" and at == len(data)
    finally:
        stream.close()
