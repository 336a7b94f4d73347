"""The user guide cannot drift from the program: every command in it runs.

Each ```sh block of docs/user-guide.md is read line by line (comments
stripped); every `p2p ...` line is run, in order, through the real CLI in a
throwaway home, after putting real values in place of the guide's
placeholders (ID, POST, MEMBER, DOC, a fingerprint prefix, /media/stick...).
A second person, "Min-jun", lives in a home of their own: `community join`
runs there, and what they write is carried back by a bundle, so the commands
that name them (role, ban, dm) have someone to act on.

A block that needs something a test machine does not have (a peer on the
network) is marked with an HTML comment on the line before it:

    <!-- guide-test: parse-only -->

Its commands are then parsed by the real click command tree (every option
and argument must exist and be valid) but not run. Sections added by others
only need that marker when their commands cannot run alone.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest

from p2p.cli.main import cli as p2p_cli
from p2p.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "user-guide.md"
PASS = "correct horse battery staple"
PEER = "Min-jun"
PARSE_ONLY = "<!-- guide-test: parse-only"


@dataclass
class Block:
    line: int
    commands: list[list[str]]
    parse_only: bool


def blocks(text: str) -> list[Block]:
    """The ```sh blocks of the guide, each as a list of p2p command lines."""
    out: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() in ("```sh", "```bash", "```console"):
            marker = next((x for x in reversed(lines[:i]) if x.strip()), "")
            start = i + 1
            i += 1
            body = []
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            commands = []
            for raw in body:
                words = shlex.split(raw.replace("$ ", "", 1), comments=True)
                if words and words[0] == "p2p":
                    commands.append(words[1:])
            out.append(Block(start, commands, marker.strip().startswith(PARSE_ONLY)))
        i += 1
    return out


def parse_only(argv: list[str]) -> None:
    """Resolve argv down the click tree and parse it, without running anything."""
    command: click.Command = p2p_cli
    ctx = command.make_context("p2p", list(argv), resilient_parsing=False)
    while isinstance(command, click.Group):
        rest = [*ctx.protected_args, *ctx.args]
        if not rest:
            break
        name, sub, args = command.resolve_command(ctx, rest)
        assert sub is not None and name is not None, argv
        command = sub
        ctx = command.make_context(name, args, parent=ctx, resilient_parsing=False)


@dataclass
class World:
    tmp: Path
    home: Path
    peer: Path
    ids: dict[str, str] = field(default_factory=dict)

    def env(self, home: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
        env.update(
            P2P_HOME=str(home),
            P2P_PASSPHRASE=PASS,
            P2P_BUNDLE_PASSPHRASE="bundle words",
            P2P_INVITE_PASSPHRASE="invite words",
        )
        return env

    def run(self, home: Path, *args: str) -> subprocess.CompletedProcess:
        """`p2p ARGS` through the CLI's entry point (`p2p.cli.main.main`, what the `p2p`
        script runs), in this process: the environment, folder and output of a
        separate process, without paying Python's start-up 60 times."""
        saved_env, saved_cwd = dict(os.environ), os.getcwd()
        out, err = io.StringIO(), io.StringIO()
        code = 0
        try:
            os.environ.clear()
            os.environ.update(self.env(home))
            os.chdir(self.tmp)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main(list(args))
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)
        return subprocess.CompletedProcess(["p2p", *args], code, out.getvalue(), err.getvalue())

    def ok(self, home: Path, *args: str) -> subprocess.CompletedProcess:
        res = self.run(home, *args)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        return res

    def js(self, home: Path, *args: str) -> object:
        return json.loads(self.ok(home, *args, "--json").stdout)

    # --- placeholders ---------------------------------------------------------

    def community(self, which: str = "first") -> str:
        if "communities" not in self.ids:  # cached until a `community` command runs
            rows = self.js(self.home, "community", "list")
            assert isinstance(rows, list) and rows, "the guide uses ID before creating one"
            self.ids["communities"] = " ".join(r["id"] for r in rows)
        ids = self.ids["communities"].split()
        return ids[0] if which == "first" else ids[-1]

    def latest_post(self) -> str:
        posts = self.js(self.home, "feed", self.community(), "--last", "0")
        assert isinstance(posts, list)
        flat: list[dict] = []
        todo = list(posts)
        while todo:
            p = todo.pop()
            flat.append(p)
            todo.extend(p["replies"])
        live = [p for p in flat if not p["deleted"] and not p["removed"]]
        return max(live, key=lambda p: p["ts"])["id"]

    def latest_attachment(self) -> str:
        posts = self.js(self.home, "feed", self.community(), "--json")
        assert isinstance(posts, list)
        with_files = [p for p in posts if p.get("attachments")]
        return max(with_files, key=lambda p: p["ts"])["attachments"][0]["hash"]

    def substitute(self, argv: list[str]) -> list[str]:
        out = []
        for i, word in enumerate(argv):
            if re.fullmatch(r"\[[A-Z]+\]", word):  # an optional argument: give it
                word = word[1:-1]
            if word == "ID":
                leaving = argv[:2] == ["community", "leave"]
                word = self.community("last" if leaving else "first")
            elif word == "POST":
                word = self.latest_post()
            elif word == "MEMBER":
                word = PEER
            elif word == "DOC":
                docs = self.js(self.home, "doc", "list", self.community())
                assert isinstance(docs, list)
                word = next(d["id"] for d in docs if d["kind"] == "feed")
            elif re.fullmatch(r"[A-Z2-7]{4}", word) and i and argv[i - 1] == "--for":
                word = self.ids["peer_fp"][:4]
            elif word.startswith("/media/stick"):
                word = str(self.tmp / "stick") + word[len("/media/stick") :]
            elif word.startswith("/new/place"):
                word = str(self.tmp / "new-place") + word[len("/new/place") :]
            elif i and argv[i - 1] == "--attach" and not (self.tmp / word).exists():
                (self.tmp / word).write_bytes(b"a sample file for the guide: " + word.encode())
            elif word == "HASH":
                word = self.latest_attachment()
            elif word.startswith("~/"):
                word = str(self.tmp / "user-home" / word[2:])
                Path(word).mkdir(parents=True, exist_ok=True)
            out.append(word)
        if out[:2] == ["community", "leave"]:
            out.append("--yes")  # the guide shows the interactive form
        return out

    # --- what the second person does ------------------------------------------

    def after(self, argv: list[str]) -> None:
        if argv[:1] == ["community"]:
            self.ids.pop("communities", None)
        if argv[:2] == ["community", "join"]:
            cid = self.community()
            self.ok(self.peer, "post", cid, "Hello from the other village")
            self.ok(self.peer, "export", "--out", str(self.tmp / "peer.p2p"))
            self.ok(self.home, "import", str(self.tmp / "peer.p2p"))


def home_for(world: World, argv: list[str]) -> Path:
    """`community join` is what the new member runs, in their own home."""
    return world.peer if argv[:2] == ["community", "join"] else world.home


def test_the_guide_has_commands_and_markers_parse() -> None:
    found = blocks(GUIDE.read_text())
    assert sum(len(b.commands) for b in found) >= 40
    marked = [b for b in found if b.parse_only]
    assert marked, "the network section is marked parse-only"
    for b in marked:  # the others run for real below
        for argv in b.commands:
            parse_only(argv)


def test_parse_only_catches_a_wrong_option() -> None:
    with pytest.raises(click.UsageError):
        parse_only(["sync", "--no-such-option"])
    with pytest.raises(click.UsageError):
        parse_only(["community", "role", "ID", "M", "admin"])


@pytest.mark.timeout(300)
def test_every_command_in_the_guide_runs(tmp_path: Path) -> None:
    world = World(tmp_path, tmp_path / "home", tmp_path / "peer")
    (tmp_path / "stick" / "p2p").mkdir(parents=True)
    world.ok(world.peer, "init", "--no-passphrase", "--name", PEER)
    world.ids["peer_fp"] = str(world.js(world.peer, "whoami")["fingerprint"])  # type: ignore[index]
    ran = 0
    try:
        for block in blocks(GUIDE.read_text()):
            if block.parse_only:
                continue
            for argv in block.commands:
                real = world.substitute(argv)
                res = world.run(home_for(world, argv), *real)
                assert res.returncode == 0, (
                    f"docs/user-guide.md line {block.line}: p2p {shlex.join(argv)}\n"
                    f"ran: p2p {shlex.join(real)}\n{res.stdout}{res.stderr}"
                )
                assert "Traceback" not in res.stderr
                world.after(argv)
                ran += 1
    finally:
        world.run(world.home, "lock")  # never leave an unlock agent behind
    assert ran >= 35


def test_known_limits_do_not_deny_what_exists() -> None:
    """core-model.md once said chat and DMs were not implemented while both shipped."""
    model = (ROOT / "docs" / "core-model.md").read_text()
    limits = model.split("## Known limits", 1)[1].lower()
    for name in ("chat", "dm"):
        assert p2p_cli.get_command(click.Context(p2p_cli), name) is not None  # it exists...
    assert "not implemented" not in limits  # ...so no limit may say otherwise
