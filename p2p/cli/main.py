"""`p2p`: the click group, its command table, and the one place errors become exit codes.

Commands are loaded lazily: `p2p whoami` must not pay for importing the LAN
stack, rich tables or the bundle code. Each command is one line in `COMMANDS`,
"name": "module:attribute", and its module is imported only when that command
runs (or when `--help` lists them all).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import click

from p2p import __version__
from p2p.cli import allocator
from p2p.cli.context import Context

# One line per top-level command: name -> "module:attribute" (a click command or group).
COMMANDS: dict[str, str] = {
    "init": "p2p.cli.cmd_identity:init",
    "whoami": "p2p.cli.cmd_identity:whoami",
    "identity": "p2p.cli.cmd_identity:identity",
    "unlock": "p2p.cli.cmd_unlock:unlock",
    "lock": "p2p.cli.cmd_unlock:lock",
    "community": "p2p.cli.cmd_community:community",
    "mod": "p2p.cli.cmd_mod:mod",
    "post": "p2p.cli.cmd_post:post",
    "react": "p2p.cli.cmd_post:react",
    "edit": "p2p.cli.cmd_post:edit",
    "delete": "p2p.cli.cmd_post:delete",
    "attachments": "p2p.cli.cmd_attach:attachments",
    "attachment": "p2p.cli.cmd_attach:attachment_group",
    "feed": "p2p.cli.cmd_feed:feed",
    "search": "p2p.cli.cmd_search:search",
    "index": "p2p.cli.cmd_index:index_group",
    "chat": "p2p.cli.cmd_chat:chat_group",
    "dm": "p2p.cli.cmd_dm:dm_group",
    "profile": "p2p.cli.cmd_profile:profile",
    "doc": "p2p.cli.cmd_doc:doc",
    "export": "p2p.cli.cmd_export:export",
    "import": "p2p.cli.cmd_import:import_",
    "verify": "p2p.cli.cmd_verify:verify",
    "inspect": "p2p.cli.cmd_verify:inspect",
    "usb": "p2p.cli.cmd_usb:usb_group",
    "serve": "p2p.cli.cmd_lan:serve",
    "sync": "p2p.cli.cmd_lan:sync",
    "peers": "p2p.cli.cmd_lan:peers",
    "demo": "p2p.cli.cmd_demo:demo",
    "app": "p2p.cli.cmd_app:app",
}


def load(name: str) -> click.Command:
    """The click command registered under `name` (imports its module)."""
    module, _, attr = COMMANDS[name].partition(":")
    command = getattr(importlib.import_module(module), attr)
    assert isinstance(command, click.Command), COMMANDS[name]
    return command


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use, from `COMMANDS`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in COMMANDS:
            return None
        return load(cmd_name)


@click.group(cls=LazyGroup)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="P2P_HOME",
    help="Data directory (default: the platform's user data dir; env P2P_HOME).",
)
@click.version_option(__version__, prog_name="p2p")
@click.pass_context
def cli(ctx: click.Context, home: Path | None) -> None:
    """Offline-first community sync: signed posts over USB bundles and local Wi-Fi."""
    ctx.obj = Context(home)
    ctx.call_on_close(ctx.obj.close)


def wants_json(argv: list[str]) -> bool:
    """Whether the command line asks for JSON (so errors are JSON too)."""
    for arg in argv:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    as_json = wants_json(args)
    if allocator.moves_bulk(args):
        allocator.keep_large_buffers()
    try:
        cli.main(args=args, prog_name="p2p", standalone_mode=False)
    except SystemExit:
        raise
    except BaseException as exc:  # every failure becomes one line (or one JSON object)
        from p2p.cli import failures

        code = failures.report(exc, as_json)
        sys.stdout.flush()
        sys.exit(code)
    _flush_or_quiet()


def _flush_or_quiet() -> None:
    """A closed pipe (`p2p feed | head`) is not an error worth a traceback."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    main()
