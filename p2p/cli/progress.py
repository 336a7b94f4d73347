"""Progress on a terminal, silence elsewhere: bytes (done / total), a rate, the
time left, and a count of what the bytes hold (changes, documents).

    with meter("importing x.p2p", total=size, unit="changes") as update:
        update(bytes_done)                      # or
        update(bytes_done, count=changes_so_far, total=new_total)

`update` is a no-op when stderr is not a terminal (scripts, --json, tests), so
callers never branch on it. Drawn by rich.progress (already a dependency),
refreshed at most a few times a second whatever the call rate.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Update(Protocol):
    def __call__(self, done: int, total: int | None = None, count: int | None = None) -> None: ...


def _silent(done: int, total: int | None = None, count: int | None = None) -> None:
    return None


@contextmanager
def meter(label: str, total: int | None = None, unit: str = "changes") -> Iterator[Update]:
    """Yield `update(bytes_done, total=None, count=None)` for one long operation."""
    if not sys.stderr.isatty():
        yield _silent
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from p2p.cli.safe import clean, safe_console

    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[count]}", markup=False),
        console=safe_console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(clean(label), total=total, count="")

        def update(done: int, total: int | None = None, count: int | None = None) -> None:
            fields: dict = {"completed": done}
            if total is not None:
                fields["total"] = max(total, done)
            if count is not None:
                fields["count"] = f"{count:,} {unit}"
            progress.update(task, **fields)

        yield update
