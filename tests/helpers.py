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
