"""Killing the process at any instant leaves a store that opens, holding before or after.

A child process imports a large batch through the acceptance path (one
transaction) and is SIGKILLed at random moments; after each kill the store
must pass SQLite's integrity check and hold exactly the state before the
import or exactly the state after it.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2p import community as cm
from p2p import content, exchange, invites
from p2p.bundle import export as ex
from p2p.home import Home

CHILD = r"""
import sys
from pathlib import Path
from p2p.home import Home
from p2p.bundle.importer import import_bundle
h = Home(Path(sys.argv[1]))
print("ready", flush=True)
import_bundle(h, [Path(sys.argv[2])])
print("done", flush=True)
"""


def state(db_path: Path) -> tuple[int, int]:
    con = sqlite3.connect(db_path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        docs = con.execute("SELECT count(*) FROM docs").fetchone()[0]
        sigs = con.execute("SELECT count(*) FROM sigs").fetchone()[0]
        return docs, sigs
    finally:
        con.close()


@pytest.mark.timeout(300)
def test_kill_mid_import_leaves_before_or_after(tmp_path: Path) -> None:
    src = Home(tmp_path / "src")
    src.create_identity(None)
    c = cm.create(src, "Village")
    invite = invites.write(src, c)
    authors = []
    for i in range(12):
        a = Home(tmp_path / f"a{i}")
        a.create_identity(None)
        invites.join(a, invite)
        ac = cm.resolve(a, c.hex)
        for j in range(60):
            content.post(a, ac, f"author {i} post {j} " + "words " * 10)
        authors.append(a)
    from p2p.accept import from_record

    for a in authors:
        src.acceptor().accept([from_record(r) for r in exchange.records_for(a, None)])
    bundle = tmp_path / "big.p2p"
    with ex.scratch_dir(src) as s:
        ex.place(ex.build(src, ex.domains([c])[0], Path(s)), bundle)

    dst = Home(tmp_path / "dst")
    dst.create_identity(None)
    invites.join(dst, invite)
    dst.close()
    pristine = tmp_path / "pristine"
    import shutil

    shutil.copytree(tmp_path / "dst", pristine)
    db = tmp_path / "dst" / "p2p.db"
    before = state(db)

    # how long the import itself takes (from "ready", as the kills are timed), to
    # spread the kills over it; start-up is not part of it
    first = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "dst"), str(bundle)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert first.stdout is not None and first.stdout.readline().strip() == "ready"
    t = time.monotonic()
    assert first.stdout.readline().strip() == "done"
    full = time.monotonic() - t
    assert first.wait() == 0
    after = state(db)
    assert after != before

    rng = random.Random(1)
    outcomes = set()
    for _ in range(8):
        shutil.rmtree(tmp_path / "dst")
        shutil.copytree(pristine, tmp_path / "dst")
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path / "dst"), str(bundle)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, full * 0.8))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        got = state(db)
        assert got in (before, after), got
        outcomes.add(got)
        # and the store opens and works through the library
        h = Home(tmp_path / "dst")
        assert h.has_identity()
        h.close()
    assert before in outcomes  # at least one kill landed inside the import


def _dump(db_path: Path) -> list[str]:
    con = sqlite3.connect(db_path)
    try:
        return list(con.iterdump())
    finally:
        con.close()


@pytest.mark.timeout(300)
def test_disk_full_mid_import_changes_nothing(tmp_path: Path) -> None:
    """The store's disk fills up during an import: a real write failure (the
    process may not grow any file past a limit, RLIMIT_FSIZE), not a mock. The
    CLI says so in one line, exits 1, and the store is exactly as before."""
    import resource

    src = Home(tmp_path / "src")
    src.create_identity(None)
    c = cm.create(src, "Village")
    for j in range(1500):  # incompressible text: the import must write ~200 KB
        content.post(src, c, f"post {j} " + os.urandom(64).hex())
    (tmp_path / "inv").write_bytes(invites.write(src, c))
    bundle = tmp_path / "big.p2p"
    with ex.scratch_dir(src) as s:
        ex.place(ex.build(src, ex.domains([c])[0], Path(s)), bundle)
    src.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    env["P2P_HOME"] = str(tmp_path / "dst")
    cli = [sys.executable, "-m", "p2p.cli.main"]
    subprocess.run([*cli, "init", "--no-passphrase"], env=env, check=True, capture_output=True)
    subprocess.run(
        [*cli, "community", "join", str(tmp_path / "inv")], env=env, check=True, capture_output=True
    )
    db = tmp_path / "dst" / "p2p.db"
    before = _dump(db)
    limit = db.stat().st_size + 16 * 1024  # room to open, not to take 1500 posts in

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    res = subprocess.run(
        [*cli, "import", str(bundle)],
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=small_disk,
        timeout=120,
    )
    assert res.returncode == 1, res.stdout + res.stderr
    lines = [x for x in res.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "Nothing was changed" in res.stderr or "nothing was" in res.stderr.lower()
    assert _dump(db) == before
    # and with room again, the same import goes through
    ok = subprocess.run([*cli, "import", str(bundle)], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "1500 new posts" in ok.stdout
