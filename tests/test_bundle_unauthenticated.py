"""A bundle whose trailer does not verify is never parsed past the container:
no record reaches msgpack, the acceptance path or the Automerge binding."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2p.bundle import container
from p2p.bundle.importer import import_bundle
from p2p.bundle.verify import verify_bundle
from p2p.errors import BadBundleSignature, BundleError
from tests.helpers import cli, dump, make_home

VECTORS = Path(__file__).resolve().parents[1] / "bundles" / "vectors"


def _tampered_record(tmp_path: Path) -> Path:
    """valid.p2p with one byte flipped inside its last record (a doc record)."""
    data = bytearray((VECTORS / "valid.p2p").read_bytes())
    data[-container.TRAILER - 4 - 10] ^= 0x40
    out = tmp_path / "tampered-late.p2p"
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("which", ["wrong-signer.p2p", "tampered.p2p", "late"])
def test_nothing_is_decoded_before_the_trailer_verifies(which, tmp_path, monkeypatch) -> None:
    path = _tampered_record(tmp_path) if which == "late" else VECTORS / which
    decoded: list[int] = []
    real = container._unpack

    def spy(data: bytes, limit: int) -> object:
        decoded.append(len(data))
        return real(data, limit)

    monkeypatch.setattr(container, "_unpack", spy)
    home = make_home(tmp_path / "h", "Reader")
    before = dump(home)
    for attempt in (lambda: verify_bundle([path]), lambda: import_bundle(home, [path])):
        decoded.clear()
        with pytest.raises(BundleError) as err:
            attempt()
        assert len(decoded) == 1, decoded  # the header (it names the signer), no record
        if which == "wrong-signer.p2p":
            assert isinstance(err.value, BadBundleSignature)
    assert dump(home) == before
    home.close()


def test_a_late_fault_is_one_line_through_the_cli(tmp_path: Path) -> None:
    path = _tampered_record(tmp_path)
    r = cli(tmp_path / "nobody", "verify", str(path))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr
