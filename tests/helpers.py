"""Small helpers shared by the tests: real homes and whole-store snapshots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from p2p import community as cm
from p2p import exchange
from p2p.accept import from_record
from p2p.home import Home


def make_home(path: Path, name: str) -> Home:
    """A home with an unprotected identity and a display name."""
    h = Home(path)
    h.create_identity(None)
    cm.set_profile(h, name, None)
    return h


def dump(home: Home) -> list[str]:
    """Every row of the store, to compare before and after."""
    return list(home.store.db.iterdump())


def share(src: Home, dst: Home) -> None:
    """Everything `src` has, through `dst`'s acceptance path; nothing may be refused."""
    report = dst.acceptor().accept([from_record(r) for r in exchange.records_for(src, None)])
    assert report.rejected == []


def cli(home: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    """The real `p2p` command in a child process, with no P2P_* variable but ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    env.update(extra_env, P2P_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "p2p.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def loads_in_this_process(monkeypatch) -> list[bytes]:  # noqa: ANN001
    """Every byte string this process hands to `binding.load` from now on (the list
    fills as the test runs): to tell what the prefetch helper loaded instead."""
    from p2p import binding

    loads: list[bytes] = []
    real = binding.load

    def loading(data, *args, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        loads.append(data)
        return real(data, *args, **kw)

    monkeypatch.setattr(binding, "load", loading)
    return loads


def prefetch_ahead(monkeypatch) -> None:  # noqa: ANN001
    """`Prefetch.loaded` waits until the helper has read the document, as when it is
    ahead of the importer in a big import (small test imports would race it)."""
    from p2p.index import prefetch

    real = prefetch.Prefetch.loaded

    def ahead(self, doc_id, data):  # noqa: ANN001, ANN202
        if doc_id in self._sent:
            self.wait(doc_id, 60)
        return real(self, doc_id, data)

    monkeypatch.setattr(prefetch.Prefetch, "loaded", ahead)
