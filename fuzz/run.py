"""Coverage-guided fuzzing of one target with atheris (libFuzzer for Python).

    python -m fuzz.run TARGET [CORPUS_DIR] [libFuzzer options]

TARGET is one of fuzz/targets.py's TARGETS (bundle, lan, accept, amformat).
Without a corpus directory, `fuzz/corpus/TARGET/` is used and seeded from
bundles/vectors/. Crash inputs are written to `fuzz/crashes/` (see
fuzz/README.md for what to do with them).

The `p2p` package is instrumented for coverage (atheris 3.0.0: 2.3.0
miscompiled some loops on Python 3.11, e.g. `amformat._sleb(b"\\xff\\x7f")`
reported a truncated integer, which made false crashes).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent


def _seed(corpus: Path, target: str) -> None:
    from fuzz import targets

    corpus.mkdir(parents=True, exist_ok=True)
    for data in targets.seeds(target):
        (corpus / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        raise SystemExit(__doc__)
    target, rest = sys.argv[1], sys.argv[2:]
    with atheris.instrument_imports(include=["p2p"]):
        import p2p.accept  # noqa: F401
        import p2p.amformat  # noqa: F401
        import p2p.binding  # noqa: F401
        import p2p.bundle.verify  # noqa: F401
        import p2p.chunk  # noqa: F401
        import p2p.lan.channel  # noqa: F401
        import p2p.lan.session  # noqa: F401
    from fuzz import targets

    if target not in targets.TARGETS:
        raise SystemExit(f"unknown target {target!r}; one of {sorted(targets.TARGETS)}")
    if not any(not a.startswith("-") for a in rest):
        corpus = HERE / "corpus" / target
        _seed(corpus, target)
        rest.append(str(corpus))
    for arg in rest:
        if not arg.startswith("-") and not any(a.startswith("-seed") for a in rest):
            _seed(Path(arg), target)
    if not any(a.startswith("-keep_seed") for a in rest):
        rest.insert(0, "-keep_seed=1")
    if not any(a.startswith("-artifact_prefix") for a in rest):
        (HERE / "crashes").mkdir(exist_ok=True)
        rest.insert(0, f"-artifact_prefix={HERE / 'crashes'}/{target}-")
    atheris.Setup([sys.argv[0], *rest], targets.TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
