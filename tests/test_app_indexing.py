"""A community whose indexes must be built first (a store an older p2p wrote): the
app runs that as a job with progress and then shows the page, instead of a page
that seems to hang; a small one is indexed as the page loads."""

from __future__ import annotations

import threading

from p2p import community as cm
from p2p import content, index
from p2p.app.pages import indexing
from tests.app_helpers import app_client, ready, wait_job


def _stale(state, c: cm.Community) -> None:  # noqa: ANN001
    """Forget what the index holds of the community (as a layout change does)."""
    db = state.home.store.db
    db.execute("DELETE FROM ix_docs WHERE community = ?", (c.id,))
    index.update._fresh.clear()


def test_a_long_first_indexing_is_a_job_with_progress(tmp_path, monkeypatch) -> None:
    with app_client(tmp_path) as (client, state):
        ready(state)
        c = cm.create(state.home, "River <b>village</b>")
        for i in range(5):
            content.post(state.home, c, f"the river at dawn {i}")
        _stale(state, c)
        assert index.to_read(state.home.docs, c.id) > 0
        n = len(index.update.stale(state.home.store.db, c.id))
        monkeypatch.setattr(indexing, "BACKGROUND", 1)  # any indexing counts as long here
        gate = threading.Event()
        real = index.refresh

        def slow(docs, community, progress=None):  # noqa: ANN001, ANN202
            gate.wait(30)  # a slow disk (a fault): the job is still running below
            return real(docs, community, progress)

        monkeypatch.setattr(index, "refresh", slow)
        r = client.get(f"/c/{c.hex}?show=60", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/jobs/")
        job = r.headers["location"]
        running = client.get(job).text
        assert "Working…" in running and "<progress" in running
        assert "River &lt;b&gt;village&lt;/b&gt;" in running  # member text stays text
        # asking again while it runs: the same job, not a second one
        again = client.get(f"/c/{c.hex}", follow_redirects=False)
        assert again.headers["location"] == job
        gate.set()
        done = wait_job(client, job)
        assert f"{n} documents read" in done and "From now on it opens at once." in done
        assert f'href="/c/{c.hex}?show=60"' in done  # back to the page asked for
        page = client.get(f"/c/{c.hex}")
        assert page.status_code == 200 and "the river at dawn 4" in page.text
        assert index.to_read(state.home.docs, c.id) == 0


def test_a_small_indexing_happens_as_the_page_loads(tmp_path) -> None:
    with app_client(tmp_path) as (client, state):
        ready(state)
        c = cm.create(state.home, "Village")
        content.post(state.home, c, "a short history")
        _stale(state, c)
        for path in (f"/c/{c.hex}", f"/c/{c.hex}/chat", f"/c/{c.hex}/dm"):
            r = client.get(path, follow_redirects=False)
            assert r.status_code == 200, path
        assert "a short history" in client.get(f"/c/{c.hex}").text
        assert not [j for j in state.jobs.jobs.values() if j.kind.startswith("index:")]
