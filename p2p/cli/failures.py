"""How a failure reaches the user: one plain line on stderr, or JSON on stdout.

Usage mistakes exit 2 (as the user guide promises), everything else 1, an
interrupt 130. With `--json` the same failure is `{"error", "kind", ...fields}`
on stdout, so a script never has to parse English. Nothing outside the program
(a damaged file, a lying peer) may produce a traceback: an unexpected exception
is one line too, with the traceback only when P2P_DEBUG is set.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import sys
import traceback

import click

from p2p.errors import P2PError, StoreCorrupt, StoreUnwritable, kind_of

USAGE = 2


def describe(exc: BaseException) -> tuple[str, str, int, dict[str, object]]:
    """(message, kind, exit status, fields) for any exception."""
    if isinstance(exc, click.UsageError):
        return _usage(exc)
    if isinstance(exc, click.exceptions.Abort):
        return "aborted", "aborted", 1, {}
    if isinstance(exc, click.ClickException):
        return exc.format_message(), "usage", exc.exit_code, {}
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "interrupted", 130, {}
    if isinstance(exc, P2PError):
        return str(exc), exc.kind, 1, dict(exc.fields)
    if isinstance(exc, sqlite3.Error):
        return _store(exc)
    if isinstance(exc, OSError):
        return _os(exc)
    if isinstance(exc, ValueError):
        return str(exc), "invalid", 1, {}
    return (
        f"internal error ({type(exc).__name__}: {exc}); nothing partial was kept."
        " Please report it (set P2P_DEBUG=1 to see the details)",
        "internal",
        1,
        {},
    )


def _usage(exc: click.UsageError) -> tuple[str, str, int, dict[str, object]]:
    message = " ".join(exc.format_message().split())
    if exc.ctx is not None:
        message += f" (see '{exc.ctx.command_path} --help')"
    return message, "usage", USAGE, {}


def _store(exc: sqlite3.Error) -> tuple[str, str, int, dict[str, object]]:
    from p2p.store import is_corrupt

    err: P2PError
    if is_corrupt(exc):
        err = StoreCorrupt()
    else:
        err = StoreUnwritable(f"{StoreUnwritable.default} ({exc})")
    return str(err), err.kind, 1, {}


def _os(exc: OSError) -> tuple[str, str, int, dict[str, object]]:
    text = exc.strerror or str(exc)
    fields: dict[str, object] = {}
    if exc.filename:
        text = f"{text}: {exc.filename}"
        fields["path"] = str(exc.filename)
    if exc.errno == errno.ENOSPC:
        text += " (the disk is full; nothing partial was kept)"
    elif exc.errno == errno.EROFS:
        text += " (the medium is read-only)"
    return text, kind_of(type(exc)), 1, fields


def one_line(text: str) -> str:
    """Messages may quote outside text (a path, a reason): never more than one line."""
    from p2p.cli.safe import clean

    return clean(" ".join(text.split()))


def report(exc: BaseException, as_json: bool) -> int:
    """Print `exc` the way the user asked for; return the exit status."""
    if os.environ.get("P2P_DEBUG") and not isinstance(exc, click.ClickException | P2PError):
        traceback.print_exception(exc)
    message, kind, code, fields = describe(exc)
    message = one_line(message)
    try:
        if as_json:
            doc = {"error": message, "kind": kind, **fields}
            sys.stdout.write(json.dumps(doc, ensure_ascii=False, default=str) + "\n")
        else:
            sys.stderr.write(f"error: {message}\n")
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    return code
