"""Start fast: commands load only what they use, and every command is registered.

Timings live in bench/bench_startup.py (smoke-run here); the tests check the
cause of slowness instead: which modules a command imports.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import click

import p2p.cli
from p2p.cli.main import COMMANDS, cli, load
from tests.helpers import cli as run

ROOT = Path(__file__).resolve().parents[1]

HEAVY = (
    "rich",
    "zeroconf",
    "automerge",
    "p2p.lan",
    "p2p.bundle",
    "p2p.community",
    "noise",
    "PIL",
    "p2p.agent",  # whoami on an unprotected home has no agent to ask
    "p2p.accept",
    "cryptography",  # no key is used: whoami reads the public half
    "pyrage",
)

# What `search` and `export --since` must leave alone (their figures in issue #12 are
# mostly start-up): the acceptance and import code, rich (output to a pipe is plain
# text), the LAN stack and, for search, keys, attachments and bundles.
NEVER = ("rich", "zeroconf", "p2p.lan", "noise", "PIL", "p2p.accept")
SEARCH_UNUSED = (*NEVER, "cryptography", "pyrage", "p2p.blobs", "p2p.bundle", "p2p.peers")
EXPORT_UNUSED = (
    *NEVER,
    "p2p.bundle.importer",
    "p2p.bundle.verify",
    "p2p.bundle.source",  # the reader: a bundle this home wrote is known by its name
    "p2p.cli.bundle_keys",
    "p2p.blobs.store",  # the chunk store (threads, direct I/O): no post names an attachment
    "p2p.blobs.attach",
)


PROBE = """
import atexit, json, sys
def probe():
    heavy = {heavy!r}
    found = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
    sys.__stderr__.write("LOADED " + json.dumps(found) + "\\n")
atexit.register(probe)
sys.argv = ["p2p", *{args!r}]
from p2p.cli.main import main
main()
"""


def loaded_by(home: Path, *args: str, watch: tuple[str, ...] = HEAVY) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    env["P2P_HOME"] = str(home)
    res = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=watch, args=list(args))],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    line = [x for x in res.stderr.splitlines() if x.startswith("LOADED ")][-1]
    return json.loads(line[len("LOADED ") :])


def test_version_and_whoami_import_no_heavy_module(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert run(home, "init", "--no-passphrase", "--name", "Ann").returncode == 0
    assert loaded_by(home, "--version") == []
    assert loaded_by(home, "whoami") == []
    assert loaded_by(home, "whoami", "--json") == []
    # ...while a command that needs them still gets them (the probe is not blind)
    assert "p2p.community" in loaded_by(home, "community", "list")


def test_everyday_commands_leave_the_lan_stack_bundles_and_pillow_alone(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert run(home, "init", "--no-passphrase", "--name", "Ann").returncode == 0
    made = run(home, "community", "create", "Town", "--json")
    cid = json.loads(made.stdout)["id"]
    for argv in (
        ["post", cid, "hello"],
        ["feed", cid],
        ["chat", "show", cid],
        ["community", "list"],
    ):
        loaded = loaded_by(home, *argv)
        assert "p2p.community" in loaded, argv  # the probe sees what they do use
        for unused in ("zeroconf", "p2p.lan", "noise", "PIL", "p2p.bundle"):
            assert unused not in loaded, (argv, unused)
    assert "rich" not in loaded_by(home, "post", cid, "a second post")  # plain click output
    # without attachments, nor output to a terminal: no attachment store, no rich
    for argv in (["post", cid, "a third post"], ["feed", cid], ["chat", "show", cid]):
        loaded = loaded_by(home, *argv, watch=(*HEAVY, "p2p.blobs"))
        assert "rich" not in loaded and "p2p.blobs" not in loaded, (argv, loaded)
    # ...while one with attachments gets it (the probe is not blind)
    photo = tmp_path / "note.txt"
    photo.write_text("hello")
    with_file = loaded_by(
        home, "post", cid, "see file", "--attach", str(photo), watch=("p2p.blobs",)
    )
    assert "p2p.blobs.attach" in with_file


def test_search_and_incremental_export_load_only_what_their_path_uses(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert run(home, "init", "--no-passphrase", "--name", "Ann").returncode == 0
    cid = json.loads(run(home, "community", "create", "Town", "--json").stdout)["id"]
    assert run(home, "post", cid, "the river bridge is open").returncode == 0
    full, inc = tmp_path / "full.p2p", tmp_path / "inc.p2p"
    assert run(home, "export", "--out", str(full)).returncode == 0
    assert run(home, "post", cid, "market tomorrow").returncode == 0

    found = loaded_by(home, "search", cid, "river", watch=(*SEARCH_UNUSED, "p2p.index"))
    assert found and all(m.startswith("p2p.index") for m in found), found

    watch = (*EXPORT_UNUSED, "p2p.bundle", "p2p.blobs")
    exported = loaded_by(home, "export", "--since", str(full), "--out", str(inc), watch=watch)
    assert inc.stat().st_size > 0
    assert "p2p.bundle.export" in exported  # the probe sees what it does use
    assert "p2p.blobs.exchange" in exported
    assert [m for m in exported if m.startswith(EXPORT_UNUSED)] == []
    # ...and a command that reads bundles still gets the reader (the probe is not blind)
    assert "p2p.bundle.verify" in loaded_by(home, "verify", str(full), watch=watch)


def test_version_matches_the_package_metadata() -> None:
    from importlib.metadata import version

    import p2p

    assert p2p.__version__ == version("p2p")
    res = run(Path("/nonexistent"), "--version")
    assert res.returncode == 0 and res.stdout.strip() == f"p2p, version {p2p.__version__}"


def test_every_command_is_registered_and_loads() -> None:
    """A top-level click command in p2p/cli/cmd_*.py that is not in COMMANDS is unreachable."""
    registered = {name: load(name) for name in COMMANDS}
    for name, command in registered.items():
        assert command.name == name, name
    reachable = {id(c) for c in registered.values()}
    for group in registered.values():
        if isinstance(group, click.Group):
            reachable |= {id(c) for c in group.commands.values()}
    for info in pkgutil.iter_modules(p2p.cli.__path__):
        if not info.name.startswith("cmd_"):
            continue
        module = importlib.import_module(f"p2p.cli.{info.name}")
        for attr, value in vars(module).items():
            if isinstance(value, click.Command) and value.__module__ == module.__name__:
                assert id(value) in reachable, f"{info.name}.{attr} is in no COMMANDS entry"
    assert sorted(cli.list_commands(click.Context(cli))) == sorted(COMMANDS)


def test_help_lists_every_command(tmp_path: Path) -> None:
    res = run(tmp_path, "--help")
    assert res.returncode == 0, res.stderr
    for name in COMMANDS:
        assert f"  {name} " in res.stdout or f"  {name}\n" in res.stdout, name


def test_bench_startup_smoke() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "bench.bench_startup", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    assert "p2p whoami" in res.stdout and "median s" in res.stdout
