"""Start-up benchmark: what a command costs before it does any work.

    python -m bench.bench_startup [--runs 20]

Each row is RUNS whole processes (interpreter start, imports, the command,
exit), run one after the other; the table gives the median and the fastest
wall time and the peak RSS. The floor is the bare interpreter (`python -c
pass`) and the interpreter plus click, measured in the same run: `p2p
--version` and `p2p whoami` should sit close to them (target: under 0.15 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float, float]:
    """(median s, fastest s, peak RSS MiB) over `runs` child processes."""
    times: list[float] = []
    peak = 0.0
    for _ in range(runs):
        start = time.perf_counter()
        pid = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL).pid
        _, status, usage = os.wait4(pid, 0)
        times.append(time.perf_counter() - start)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(argv)} failed")
        peak = max(peak, usage.ru_maxrss / 1024)  # this child only (wait4), in KiB on Linux
    return statistics.median(times), min(times), peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    py = sys.executable
    p2p = [py, "-m", "p2p.cli.main"]
    with tempfile.TemporaryDirectory() as t:
        env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
        env["P2P_HOME"] = str(Path(t) / "home")
        subprocess.run(
            [*p2p, "init", "--no-passphrase", "--name", "Bench"],
            env=env,
            check=True,
            capture_output=True,
        )
        rows = [
            ("python -c pass (floor)", [py, "-c", "pass"]),
            ("python -c 'import click' (floor)", [py, "-c", "import click"]),
            ("p2p --version", [*p2p, "--version"]),
            ("p2p whoami", [*p2p, "whoami"]),
            ("p2p whoami --json", [*p2p, "whoami", "--json"]),
            ("p2p community list", [*p2p, "community", "list"]),
            ("p2p --help (imports every command)", [*p2p, "--help"]),
        ]
        results = [(label, *measure(argv, env, args.runs)) for label, argv in rows]
    floor = results[0][1]
    print(f"start-up, {args.runs} runs each (load average {os.getloadavg()[0]:.2f})")
    print(f"{'command':38} {'median s':>9} {'fastest s':>10} {'x floor':>8} {'RSS MiB':>8}")
    for label, median, fastest, rss in results:
        print(f"{label:38} {median:9.3f} {fastest:10.3f} {median / floor:8.1f} {rss:8.1f}")
    print("target: p2p --version and p2p whoami under 0.150 s")


if __name__ == "__main__":
    main()
