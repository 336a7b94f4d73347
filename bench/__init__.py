"""Benchmarks: each prints a table; see bench/README.md.

Importing this package byte-compiles the p2p package beside it (`compileall`,
a no-op when the .pyc files are current). An installed p2p runs from bytecode
(pip and Debian compile at install), but this checkout is installed editable,
and where PYTHONDONTWRITEBYTECODE is set (as on our build machines) every timed
command would compile some forty modules from source first: 50-70 ms that no
user pays. Old code unpacked for same-run comparisons is compiled the same way
(`measure.compiled`).
"""

from pathlib import Path

from bench.measure import compiled

compiled(Path(__file__).resolve().parents[1])
