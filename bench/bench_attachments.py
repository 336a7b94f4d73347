"""Attachment benchmark: a large file out, checked and in, against cp+sync and NNCP.

    python -m bench.bench_attachments [--size-mib 1024] [--no-nncp]

One file of SIZE MiB of random bytes (incompressible, as photos and films are).
Every step is a whole command in its own process (start-up included), timed,
with its own peak RSS (`ru_maxrss` from os.wait4):

- p2p, open and private community: `post --attach` (chunk, hash, seal if
  private, store), `export`, `verify`, `import` into a second home,
  `attachment save`, and `usb sync` out of and into a stick folder;
- `cp FILE DEST && sync`: the physical limit of this disk for one copy;
- NNCP (Debian `nncp`, same run, temporary configs): `nncp-file` then
  `nncp-bundle -tx` (out), `nncp-bundle -rx -check -dryrun` (verify),
  `nncp-bundle -rx` then `nncp-toss` (in).

Ratios: p2p out = post --attach + export against nncp-file + bundle -tx; p2p in
= import against bundle -rx + toss (and import + save, which also writes the
file out, as toss does); each also against cp+sync. The last line is JSON with
every figure. Asserts nothing but that each command succeeds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1024 * 1024


TIME = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)


def run(cmd: list[str], env: dict[str, str] | None = None, stdin=None, stdout=None):  # noqa: ANN001, ANN201
    """(seconds, peak RSS in KiB of that one command, stdout text).

    The peak comes from GNU time's %M when it is installed: its child is forked
    from `time` itself (a few MiB), so the figure is the command's own. Else
    from os.wait4, where a forked child may start from this bench's own peak."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        with tempfile.NamedTemporaryFile("r") as rss_file:
            wrapped = [TIME, "-f", "%M", "-o", rss_file.name, *cmd] if TIME else cmd
            t = time.perf_counter()
            proc = subprocess.Popen(wrapped, stdout=stdout or out, stderr=err, stdin=stdin, env=env)
            _pid, status, usage = os.wait4(proc.pid, 0)
            elapsed = time.perf_counter() - t
            rss = usage.ru_maxrss
            if TIME:
                text = rss_file.read().strip().splitlines()
                rss = int(text[-1]) if text and text[-1].isdigit() else rss
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed: {err.read().decode()[-2000:]}")
        out.seek(0)
        return elapsed, rss, out.read().decode(errors="replace")


def p2p(home: Path, *args: str) -> tuple[float, int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    env["P2P_HOME"] = str(home)
    return run([sys.executable, "-m", "p2p.cli.main", *args], env)


def make_file(path: Path, size: int) -> None:
    with path.open("wb") as out:
        left = size
        block = os.urandom(MiB)
        n = 0
        while left > 0:
            # vary each MiB cheaply so no two chunks are equal (no accidental dedup)
            piece = n.to_bytes(8, "big") + block[8 : min(MiB, left)]
            out.write(piece[: min(MiB, left)])
            left -= MiB
            n += 1


def same(a: Path, b: Path) -> bool:
    """Byte for byte, a MiB at a time (the bench process stays small: children
    inherit its peak RSS at fork, see `floor`)."""
    with a.open("rb") as x, b.open("rb") as y:
        while True:
            p, q = x.read(MiB), y.read(MiB)
            if p != q:
                return False
            if not p:
                return True


def cp_sync(src: Path, dest: Path) -> tuple[float, int, str]:
    return run(["sh", "-c", f'cp "{src}" "{dest}" && sync'])


def p2p_round(tmp: Path, src: Path, private: bool) -> dict[str, tuple[float, int]]:
    """Every p2p step for one community kind; {step: (seconds, peak RSS KiB)}."""
    label = "private" if private else "open"
    a, b = tmp / f"{label}-a", tmp / f"{label}-b"
    for h in (a, b):
        p2p(h, "init", "--no-passphrase")
    made = ["community", "create", f"Bench {label}", "--json"] + (["--private"] if private else [])
    cid = json.loads(p2p(a, *made)[2])["id"]
    p2p(a, "community", "invite", cid, "--out", str(tmp / f"{label}.inv"), "--no-passphrase")
    p2p(b, "community", "join", str(tmp / f"{label}.inv"))
    steps: dict[str, tuple[float, int]] = {}
    t, rss, out = p2p(a, "post", cid, "a large file", "--attach", str(src), "--json")
    steps["post --attach"] = (t, rss)
    bundle = tmp / f"{label}.p2p"
    t, rss, _ = p2p(a, "export", cid, "--out", str(bundle))
    steps["export"] = (t, rss)
    steps["verify"] = p2p(b, "verify", str(bundle))[:2]
    steps["import"] = p2p(b, "import", str(bundle))[:2]
    aid = json.loads(out)["attachments"][0]["hash"]
    saved = tmp / f"{label}.out"
    steps["attachment save"] = p2p(b, "attachment", "save", aid, "--out", str(saved))[:2]
    if not same(saved, src):
        raise SystemExit("the saved attachment differs from the original")
    bundle.unlink()
    saved.unlink()
    shutil.rmtree(b)
    # the drop box: A writes to a stick folder, a fresh B reads it
    stick = tmp / f"{label}-stick"
    stick.mkdir()
    p2p(b, "init", "--no-passphrase")
    p2p(b, "community", "join", str(tmp / f"{label}.inv"))
    steps["usb sync (write)"] = p2p(a, "usb", "sync", str(stick))[:2]
    steps["usb sync (read)"] = p2p(b, "usb", "sync", str(stick))[:2]
    for d in (a, b, stick):
        shutil.rmtree(d)
    return steps


def nncp_round(tmp: Path, src: Path) -> dict[str, tuple[float, int]] | None:
    if not shutil.which("nncp-file"):
        return None
    keys = {}
    for node in ("a", "b"):
        text = subprocess.run(
            ["nncp-cfgnew", "-nocomments"], capture_output=True, text=True, check=True
        ).stdout
        start = text.index("self: {")
        keys[node] = dict(re.findall(r"(\w+): (\S+)", text[start : text.index("}", start)]))
    cfgs = {}
    for node, other in (("a", "b"), ("b", "a")):
        me, them = keys[node], keys[other]
        pub = ("id", "exchpub", "signpub", "noisepub")
        spool = tmp / f"nncp-{node}-spool"
        spool.mkdir()
        (tmp / f"nncp-{node}-in").mkdir()
        cfg = {
            "spool": str(spool),
            "log": str(tmp / f"nncp-{node}.log"),
            "self": {k: v for k, v in me.items() if k != "self"},
            "neigh": {
                "self": {k: me[k] for k in pub},
                other: {**{k: them[k] for k in pub}, "incoming": str(tmp / f"nncp-{node}-in")},
            },
        }
        cfgs[node] = tmp / f"nncp-{node}.hjson"
        cfgs[node].write_text(json.dumps(cfg))
    a, b = str(cfgs["a"]), str(cfgs["b"])
    steps: dict[str, tuple[float, int]] = {}
    steps["nncp-file"] = run(["nncp-file", "-cfg", a, "-noprogress", str(src), "b:"])[:2]
    bundle = tmp / "nncp.bundle"
    with bundle.open("wb") as fh:
        t, rss, _ = run(["nncp-bundle", "-cfg", a, "-noprogress", "-tx", "b"], stdout=fh)
    t2, rss2, _ = run(["sync"])
    steps["nncp-bundle -tx"] = (t + t2, rss)
    with bundle.open("rb") as fh:
        steps["nncp-bundle -rx -check -dryrun"] = run(
            ["nncp-bundle", "-cfg", b, "-noprogress", "-rx", "-check", "-dryrun"], stdin=fh
        )[:2]
    with bundle.open("rb") as fh:
        steps["nncp-bundle -rx"] = run(["nncp-bundle", "-cfg", b, "-noprogress", "-rx"], stdin=fh)[
            :2
        ]
    t, rss, _ = run(["nncp-toss", "-cfg", b, "-noprogress"])
    t2, _r, _ = run(["sync"])
    steps["nncp-toss"] = (t + t2, rss)
    got = tmp / "nncp-b-in" / src.name
    if not got.exists() or got.stat().st_size != src.stat().st_size:
        raise SystemExit("nncp did not deliver the file")
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--no-nncp", action="store_true")
    args = ap.parse_args()
    size = args.size_mib * MiB
    base = Path(os.environ.get("BENCH_TMP", tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(dir=base, prefix="bench-attach-") as td:
        tmp = Path(td)
        src = tmp / "film.bin"
        make_file(src, size)
        floor = run(["true"])[1]
        copy = cp_sync(src, tmp / "copy.bin")[:2]
        (tmp / "copy.bin").unlink()
        rounds = {"open": p2p_round(tmp, src, False), "private": p2p_round(tmp, src, True)}
        nncp = None if args.no_nncp else nncp_round(tmp, src)
    mbs = lambda t: size / MiB / t if t else 0.0  # noqa: E731
    print(f"p2p attachment benchmark: one {args.size_mib} MiB file (machine shared: under load)")
    print(f"{'step':40} {'seconds':>8} {'MiB/s':>8} {'peak RSS MiB':>13}  note")
    print(f"{'(floor: `true` under this bench)':40} {'':8} {'':8} {floor / 1024:13.0f}")
    print(f"{'cp + sync':40} {copy[0]:8.2f} {mbs(copy[0]):8.0f} {copy[1] / 1024:13.0f}  the disk")
    figures: dict = {"size_mib": args.size_mib, "cp_sync_s": copy[0]}
    for kind, steps in rounds.items():
        for step, (t, rss) in steps.items():
            note = f"{copy[0] / t:.2f}x cp+sync" if t else ""
            name = f"p2p {step} ({kind})"
            print(f"{name:40} {t:8.2f} {mbs(t):8.0f} {rss / 1024:13.0f}  {note}")
            figures[f"{kind}:{step}"] = {"s": round(t, 3), "rss_mib": round(rss / 1024, 1)}
    if nncp is None:
        print(
            "nncp: skipped (not installed; Debian package `nncp`)"
            if not args.no_nncp
            else "nncp: skipped (--no-nncp)"
        )
    else:
        for step, (t, rss) in nncp.items():
            print(f"{step:40} {t:8.2f} {mbs(t):8.0f} {rss / 1024:13.0f}")
            figures[f"nncp:{step}"] = {"s": round(t, 3), "rss_mib": round(rss / 1024, 1)}
        n_out = nncp["nncp-file"][0] + nncp["nncp-bundle -tx"][0]
        n_in = nncp["nncp-bundle -rx"][0] + nncp["nncp-toss"][0]
        n_verify = nncp["nncp-bundle -rx -check -dryrun"][0]
        print("ratios (p2p throughput / nncp throughput; targets: open >= 2, private >= 1.3):")
        for kind, steps in rounds.items():
            p_out = steps["post --attach"][0] + steps["export"][0]
            p_in = steps["import"][0]
            p_in_save = p_in + steps["attachment save"][0]
            r = {
                "out": n_out / p_out,
                "verify": n_verify / steps["verify"][0],
                "in": n_in / p_in,
                "in+save": n_in / p_in_save,
                "out_vs_cp": p_out / copy[0],
                "in_vs_cp": p_in / copy[0],
            }
            figures[f"ratio:{kind}"] = {k: round(v, 2) for k, v in r.items()}
            print(
                f"  {kind:8} out {r['out']:.2f}x  verify {r['verify']:.2f}x  in {r['in']:.2f}x"
                f"  (in+save {r['in+save']:.2f}x);  time vs cp+sync: out {r['out_vs_cp']:.1f}x,"
                f" in {r['in_vs_cp']:.1f}x (target <= 3)"
            )
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this bench process itself peaked at {own:.0f} MiB)")
    peak = max(
        v["rss_mib"]
        for k, v in figures.items()
        if isinstance(v, dict) and "rss_mib" in v and not k.startswith("nncp")
    )
    figures["p2p_peak_rss_mib"] = peak
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
