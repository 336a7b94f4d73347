"""Small helpers shared by the tests: real homes and whole-store snapshots."""

from __future__ import annotations

from pathlib import Path

from p2p import community as cm
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
