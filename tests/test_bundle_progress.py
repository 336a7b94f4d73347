"""Progress in bytes and changes, with a rate and the time left, on a terminal
only: through the real CLI under a pseudo-terminal, and silent in a pipe."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

from p2p import community as cm
from p2p import content, invites
from tests.helpers import cli, make_home


def _on_a_terminal(home: Path, *args: str) -> tuple[int, str]:
    """Run `p2p ARGS` with stdout and stderr on a pseudo-terminal; (status, all it drew)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    env.update(P2P_HOME=str(home), COLUMNS="160", TERM="xterm")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "p2p.cli.main", *args],
        stdout=follower,
        stderr=follower,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    os.close(follower)
    out = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return proc.wait(timeout=60), out.decode(errors="replace")


def test_import_verify_export_show_bytes_rate_and_changes(tmp_path: Path) -> None:
    alice = make_home(tmp_path / "a", "Alice")
    bob = make_home(tmp_path / "b", "Bob")
    c = cm.create(alice, "Village")
    invites.join(bob, invites.write(alice, c))
    for i in range(300):
        content.post(alice, c, f"post {i} " + "words " * 30)
    alice.close()
    bob.close()
    bundle = tmp_path / "x.p2p"
    status, drawn = _on_a_terminal(tmp_path / "a", "export", "--out", str(bundle))
    assert status == 0, drawn
    # bytes done / expected (rich's DownloadColumn), then the count of what they hold;
    # the rate and time left columns read "?" until there is enough to say
    done_of_total = re.compile(r"[\d.]+/[\d.]+ (bytes|kB|MB)")
    assert "exporting" in drawn and done_of_total.search(drawn), drawn
    assert re.search(r"\d+ documents", drawn), drawn
    status, drawn = _on_a_terminal(tmp_path / "b", "verify", str(bundle))
    assert status == 0, drawn
    assert "verifying x.p2p" in drawn and done_of_total.search(drawn), drawn
    assert re.search(r"[\d,]+ changes", drawn), drawn
    status, drawn = _on_a_terminal(tmp_path / "b", "import", str(bundle))
    assert status == 0, drawn
    assert "importing x.p2p" in drawn and done_of_total.search(drawn), drawn
    assert re.search(r"[\d,]+ changes applied", drawn), drawn
    # in a pipe: not a trace of it
    r = cli(tmp_path / "b", "verify", str(bundle))
    assert "verifying" not in r.stderr and "\x1b" not in r.stderr + r.stdout
