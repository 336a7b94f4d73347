"""Attachment benchmark: a large file out, checked and in, against cp+sync and NNCP.

    python -m bench.bench_attachments [--size-mib 1024] [--no-nncp]

One file of SIZE MiB of random bytes (incompressible, as photos and films are).
Every step is a whole command in its own process (start-up included), timed
(wall and CPU seconds, user+sys of the command and its children), with its
own peak RSS (both from `bench/measure.py`). Each timed step starts with nothing dirty in
the page cache (`sync` before it, untimed), so no step pays for an earlier
one's writes (the 1 GiB source file is made, then synced, before anything):

- p2p, open and private community: `post --attach` (chunk, hash, seal if
  private, store), `export`, `verify`, `import` into a second home,
  `attachment save`, and `usb sync` out of and into a stick folder;
- `cp FILE DEST && sync`: the physical limit of this disk for one copy;
- `dd` reading the file and writing it durably, both past the page cache
  (O_DIRECT, as p2p's chunk store and bundles are): this design's floor;
- NNCP (Debian `nncp`, same run, temporary configs): `nncp-file` then
  `nncp-bundle -tx` (out), `nncp-bundle -rx -check -dryrun` (verify),
  `nncp-bundle -rx` then `nncp-toss` (in).

Ratios: p2p out = post --attach + export against nncp-file + bundle -tx; p2p in
= import against bundle -rx + toss (and import + save, which also writes the
file out, as toss does); each also against cp+sync. The physical limit: `out`
makes the file durable twice (into the store, then as the bundle; NNCP's out
does the same: its spool, then the bundle), so its floor is 2 x cp+sync, and
the best ratio to NNCP this disk allows is NNCP's out time over that floor;
both are printed next to the targets. p2p's own floor is higher: its chunk store is
written past the page cache (buffered writes of many 1 MiB files cost several
times more kernel time here), so export reads the chunks back from the disk:
write + read + write, timed with `dd`. The last line is JSON with every figure.
Asserts nothing but that each command succeeds.
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
from pathlib import Path

from bench import measure

MiB = 1024 * 1024


class Timed(tuple):
    """(wall seconds, peak RSS KiB, stdout text) with `.cpu`: user+sys seconds."""

    cpu: float = 0.0


def timed(wall: float, rss: int, out: str, cpu: float) -> Timed:
    t = Timed((wall, rss, out))
    t.cpu = cpu
    return t


def run(cmd: list[str], env: dict[str, str] | None = None, stdin=None, stdout=None) -> Timed:  # noqa: ANN001
    """(seconds, peak RSS in KiB of that one command, stdout text); `.cpu` its
    user+sys seconds. A `sync` first (untimed): the command starts with nothing
    dirty to flush. Measured by `bench/measure.py` (the command's own peak)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        os.sync()
        got = measure.run(cmd, env=env, stdin=stdin, stdout=stdout or out, stderr=err)
        if got.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed: {err.read().decode()[-2000:]}")
        out.seek(0)
        return timed(got.seconds, got.rss_kib, out.read().decode(errors="replace"), got.cpu)


def p2p(home: Path, *args: str) -> Timed:
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
    os.sync()  # else the first timed `sync` (cp + sync) would also flush the source


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


def cp_sync(src: Path, dest: Path) -> Timed:
    return run(["sh", "-c", f'cp "{src}" "{dest}" && sync'])


def direct(src: Path, dest: Path) -> tuple[Timed, Timed] | None:
    """(a read of `src` from the disk, a durable write of it to `dest`), both past
    the page cache (O_DIRECT, as p2p's chunk store and bundles are; `dd`); None
    where the file system refuses O_DIRECT (tmpfs)."""
    try:
        read = run(["dd", f"if={src}", "of=/dev/null", "bs=8M", "iflag=direct", "status=none"])
        wrote = run(
            ["sh", "-c", f'dd if="{src}" of="{dest}" bs=8M oflag=direct status=none && sync']
        )
    except SystemExit:
        return None
    finally:
        dest.unlink(missing_ok=True)
    return read, wrote


Step = tuple[float, int, float]  # wall seconds, peak RSS KiB, CPU seconds


def step(t: Timed) -> Step:
    return (t[0], t[1], t.cpu)


def p2p_round(tmp: Path, src: Path, private: bool) -> dict[str, Step]:
    """Every p2p step for one community kind; {step: (seconds, peak RSS KiB, CPU s)}."""
    label = "private" if private else "open"
    a, b = tmp / f"{label}-a", tmp / f"{label}-b"
    for h in (a, b):
        p2p(h, "init", "--no-passphrase")
    made = ["community", "create", f"Bench {label}", "--json"] + (["--private"] if private else [])
    cid = json.loads(p2p(a, *made)[2])["id"]
    p2p(a, "community", "invite", cid, "--out", str(tmp / f"{label}.inv"), "--no-passphrase")
    p2p(b, "community", "join", str(tmp / f"{label}.inv"))
    steps: dict[str, Step] = {}
    posted = p2p(a, "post", cid, "a large file", "--attach", str(src), "--json")
    steps["post --attach"] = step(posted)
    bundle = tmp / f"{label}.p2p"
    steps["export"] = step(p2p(a, "export", cid, "--out", str(bundle)))
    steps["verify"] = step(p2p(b, "verify", str(bundle)))
    steps["import"] = step(p2p(b, "import", str(bundle)))
    aid = json.loads(posted[2])["attachments"][0]["hash"]
    saved = tmp / f"{label}.out"
    steps["attachment save"] = step(p2p(b, "attachment", "save", aid, "--out", str(saved)))
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
    steps["usb sync (write)"] = step(p2p(a, "usb", "sync", str(stick)))
    steps["usb sync (read)"] = step(p2p(b, "usb", "sync", str(stick)))
    for d in (a, b, stick):
        shutil.rmtree(d)
    return steps


def nncp_round(tmp: Path, src: Path) -> dict[str, Step] | None:
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
    steps: dict[str, Step] = {}
    steps["nncp-file"] = step(run(["nncp-file", "-cfg", a, "-noprogress", str(src), "b:"]))
    bundle = tmp / "nncp.bundle"
    # nncp-bundle -tx writes to stdout: its `sync` after it is part of the step
    tx = ["sh", "-c", f'nncp-bundle -cfg "{a}" -noprogress -tx b > "{bundle}" && sync']
    steps["nncp-bundle -tx"] = step(run(tx))
    with bundle.open("rb") as fh:
        steps["nncp-bundle -rx -check -dryrun"] = step(
            run(["nncp-bundle", "-cfg", b, "-noprogress", "-rx", "-check", "-dryrun"], stdin=fh)
        )
    # durable like p2p import (a `sync` after it, in the step)
    rx = ["sh", "-c", f'nncp-bundle -cfg "{b}" -noprogress -rx < "{bundle}" && sync']
    steps["nncp-bundle -rx"] = step(run(rx))
    steps["nncp-toss"] = step(run(["sh", "-c", f'nncp-toss -cfg "{b}" -noprogress && sync']))
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
        copied = cp_sync(src, tmp / "copy.bin")
        copy = step(copied)
        (tmp / "copy.bin").unlink()
        disk = direct(src, tmp / "copy.bin")
        rounds = {"open": p2p_round(tmp, src, False), "private": p2p_round(tmp, src, True)}
        nncp = None if args.no_nncp else nncp_round(tmp, src)
    mbs = lambda t: size / MiB / t if t else 0.0  # noqa: E731
    load = os.getloadavg()
    print(
        f"p2p attachment benchmark: one {args.size_mib} MiB file (machine shared: load "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f})"
    )
    head = f"{'step':40} {'seconds':>8} {'CPU s':>6} {'MiB/s':>8} {'peak RSS MiB':>13}  note"
    print(head)
    print(f"{'(floor: `true` under this bench)':40} {'':8} {'':6} {'':8} {floor / 1024:13.0f}")
    print(
        f"{'cp + sync':40} {copy[0]:8.2f} {copy[2]:6.2f} {mbs(copy[0]):8.0f} "
        f"{copy[1] / 1024:13.0f}  the disk: one durable copy"
    )
    figures: dict = {"size_mib": args.size_mib, "cp_sync_s": copy[0], "load": load[0]}
    if disk is not None:
        for label, t in (
            ("disk read (dd, O_DIRECT)", disk[0]),
            ("disk write (dd, O_DIRECT) + sync", disk[1]),
        ):
            print(f"{label:40} {t[0]:8.2f} {t.cpu:6.2f} {mbs(t[0]):8.0f} {t[1] / 1024:13.0f}")
        figures["disk_read_s"], figures["disk_write_s"] = disk[0][0], disk[1][0]
    for kind, steps in rounds.items():
        for name_, (t, rss, cpu) in steps.items():
            note = f"{copy[0] / t:.2f}x cp+sync" if t else ""
            name = f"p2p {name_} ({kind})"
            print(f"{name:40} {t:8.2f} {cpu:6.2f} {mbs(t):8.0f} {rss / 1024:13.0f}  {note}")
            figures[f"{kind}:{name_}"] = {
                "s": round(t, 3),
                "cpu_s": round(cpu, 3),
                "rss_mib": round(rss / 1024, 1),
            }
    if nncp is None:
        print(
            "nncp: skipped (not installed; Debian package `nncp`)"
            if not args.no_nncp
            else "nncp: skipped (--no-nncp)"
        )
    else:
        for name_, (t, rss, cpu) in nncp.items():
            print(f"{name_:40} {t:8.2f} {cpu:6.2f} {mbs(t):8.0f} {rss / 1024:13.0f}")
            figures[f"nncp:{name_}"] = {
                "s": round(t, 3),
                "cpu_s": round(cpu, 3),
                "rss_mib": round(rss / 1024, 1),
            }
        n_out = nncp["nncp-file"][0] + nncp["nncp-bundle -tx"][0]
        n_in = nncp["nncp-bundle -rx"][0] + nncp["nncp-toss"][0]
        n_verify = nncp["nncp-bundle -rx -check -dryrun"][0]
        floor_out = 2 * copy[0]  # out makes the file durable twice (store, bundle)
        print(
            f"physical limit of out (open and private): 2 x cp+sync = {floor_out:.2f} s "
            f"(the file made durable twice, as NNCP's out does too): the best out ratio "
            f"to NNCP this disk allows is {n_out / floor_out:.2f}x"
        )
        if disk is not None:
            # p2p's chunk store writes past the page cache, so export reads the
            # chunks back from the disk: three transfers where NNCP's out has two
            # (its spool is read back from the page cache)
            design = 2 * disk[1][0] + disk[0][0]
            figures["out_design_floor_s"] = design
            print(
                f"this design's floor of out: write + read back + write past the cache = "
                f"{design:.2f} s: the best out ratio to NNCP it allows is {n_out / design:.2f}x"
            )
        print("ratios (p2p throughput / nncp throughput; targets: open >= 2, private >= 1.3):")
        for kind, steps in rounds.items():
            p_out = steps["post --attach"][0] + steps["export"][0]
            p_out_cpu = steps["post --attach"][2] + steps["export"][2]
            p_in = steps["import"][0]
            p_in_save = p_in + steps["attachment save"][0]
            r = {
                "out": n_out / p_out,
                "out_best": n_out / floor_out,
                "verify": n_verify / steps["verify"][0],
                "in": n_in / p_in,
                "in+save": n_in / p_in_save,
                "out_vs_cp": p_out / copy[0],
                "out_vs_floor": p_out / floor_out,
                "in_vs_cp": p_in / copy[0],
                "out_cpu_s": p_out_cpu,
                "usb_write_vs_cp": steps["usb sync (write)"][0] / copy[0],
                "export_vs_cp": steps["export"][0] / copy[0],
                "verify_vs_cp": steps["verify"][0] / copy[0],
            }
            figures[f"ratio:{kind}"] = {k: round(v, 2) for k, v in r.items()}
            print(
                f"  {kind:8} out {r['out']:.2f}x  verify {r['verify']:.2f}x  in {r['in']:.2f}x"
                f"  (in+save {r['in+save']:.2f}x);  time vs cp+sync (targets <= 3): export"
                f" {r['export_vs_cp']:.1f}x, verify {r['verify_vs_cp']:.1f}x, import"
                f" {r['in_vs_cp']:.1f}x; also out {r['out_vs_cp']:.1f}x ({r['out_vs_floor']:.2f}x"
                f" its 2-copy floor), usb write {r['usb_write_vs_cp']:.1f}x"
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
