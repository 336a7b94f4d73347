"""`p2p`: the click group and the one place errors become exit codes."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import click

from p2p.cli import (
    cmd_app,
    cmd_attach,
    cmd_chat,
    cmd_community,
    cmd_demo,
    cmd_dm,
    cmd_doc,
    cmd_export,
    cmd_feed,
    cmd_identity,
    cmd_import,
    cmd_index,
    cmd_lan,
    cmd_mod,
    cmd_post,
    cmd_profile,
    cmd_search,
    cmd_usb,
    cmd_verify,
)
from p2p.cli.context import Context, err_console
from p2p.errors import P2PError


@click.group()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="P2P_HOME",
    help="Data directory (default: the platform's user data dir; env P2P_HOME).",
)
@click.version_option(package_name="p2p")
@click.pass_context
def cli(ctx: click.Context, home: Path | None) -> None:
    """Offline-first community sync: signed posts over USB bundles and local Wi-Fi."""
    ctx.obj = Context(home)
    ctx.call_on_close(ctx.obj.close)


for module in (
    cmd_identity,
    cmd_community,
    cmd_mod,
    cmd_post,
    cmd_attach,
    cmd_feed,
    cmd_search,
    cmd_index,
    cmd_chat,
    cmd_dm,
    cmd_profile,
    cmd_doc,
    cmd_export,
    cmd_import,
    cmd_verify,
    cmd_usb,
    cmd_lan,
    cmd_demo,
    cmd_app,
):
    module.register(cli)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except P2PError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        sys.exit(1)
    except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        sys.exit(1)
    except sqlite3.Error as exc:  # the store's disk is full or failing
        err_console.print(
            f"[bold red]error:[/] the data store could not be written ({exc}): is its disk "
            "full or failing? Nothing was changed",
            soft_wrap=True,
        )
        sys.exit(1)
    except OSError as exc:  # a full disk, a pulled stick, a read-only folder
        where = f": {exc.filename}" if exc.filename else ""
        err_console.print(f"[bold red]error:[/] {exc.strerror or exc}{where}", soft_wrap=True)
        sys.exit(1)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
