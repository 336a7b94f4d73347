"""What every command shares: the home, the passphrase prompt, output helpers."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from p2p.errors import WrongPassphrase
from p2p.home import Home, default_path

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
console = Console(highlight=False, soft_wrap=True)


def ask_passphrase(
    creating: bool, env: str = "P2P_PASSPHRASE", label: str = "passphrase"
) -> str | None:
    """The environment variable for scripts, else a prompt on a terminal."""
    value = os.environ.get(env)
    if value is not None:
        return value
    if not sys.stdin.isatty():
        raise WrongPassphrase(f"a {label} is needed: set {env} or run this from a terminal")
    return click.prompt(
        f"New {label}" if creating else label[:1].upper() + label[1:],
        hide_input=True,
        confirmation_prompt=creating,
    )


class Context:
    def __init__(self, home_path: Path | None) -> None:
        self.home_path = home_path or default_path()
        self._home: Home | None = None

    @property
    def home(self) -> Home:
        if self._home is None:
            self._home = Home(self.home_path, ask_passphrase)
        return self._home

    def close(self) -> None:
        if self._home is not None:
            self._home.close()


pass_ctx = click.make_pass_decorator(Context)

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, set):
        return sorted(value)
    raise TypeError(type(value).__name__)


def local_time(ms: int) -> str:
    """A stored timestamp (Unix milliseconds) as this machine's local time."""
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M")


def plural(n: int, word: str) -> str:
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word[:-1]}ies" if word.endswith("y") else f"{n} {word}s"


def warn(message: str) -> None:
    err_console.print(f"[bold yellow]warning:[/] {message}")
