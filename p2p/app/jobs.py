"""Long operations (USB drop box, import) run in a thread of their own, with
their own connection to the home, and report progress the pages stream."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from p2p.errors import P2PError
from p2p.home import Home

if TYPE_CHECKING:
    from p2p.app.state import AppState

MAX_KEPT = 20


@dataclass
class Job:
    id: int
    kind: str
    label: str
    done: int = 0
    total: int | None = None
    step: str = ""  # what it is doing now, in the library's words
    status: str = "running"  # running, done, failed
    result: Any = None
    error: str = ""
    started: float = field(default_factory=time.time)
    back: str = "/move"  # the page the job was started from


Progress = Callable[..., None]  # progress(bytes_done, total=None, step=None)
Work = Callable[[Home, Progress], Any]


class Jobs:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self.jobs: dict[int, Job] = {}
        self.version = 0
        self._ids = itertools.count(1)
        self._threads: list[threading.Thread] = []

    def _bump(self) -> None:
        self.version += 1

    def start(self, kind: str, label: str, work: Work, back: str = "/move") -> Job:
        job = Job(next(self._ids), kind, label, back=back)
        self.jobs[job.id] = job
        for old in sorted(self.jobs)[:-MAX_KEPT]:
            if self.jobs[old].status != "running":
                del self.jobs[old]

        def progress(done: int, total: int | None = None, step: str | None = None) -> None:
            job.done = done
            if total is not None:
                job.total = total
            if step is not None:
                job.step = step
            self._bump()

        def run() -> None:
            home = self.state.worker_home()
            try:
                job.result = work(home, progress)
                job.status = "done"
            except (P2PError, ValueError, OSError) as exc:
                job.error, job.status = str(exc), "failed"
            except Exception as exc:  # noqa: BLE001 - shown as one line, never a traceback
                job.error = f"it stopped unexpectedly ({exc.__class__.__name__}); nothing was lost"
                job.status = "failed"
            finally:
                home.close()
                self._bump()

        thread = threading.Thread(target=run, name=f"p2p-job-{job.id}", daemon=True)
        self._threads.append(thread)
        thread.start()
        self._bump()
        return job

    def close(self) -> None:
        for t in self._threads:
            t.join(timeout=30)
