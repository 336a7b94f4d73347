"""What every command shares: the home, the passphrase prompt, output helpers."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

import click

from p2p.errors import WrongPassphrase

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from p2p.cli.safe import Block
    from p2p.home import Home


def _stream(err: bool) -> TextIO:
    return sys.stderr if err else sys.stdout


def plain(err: bool = False) -> bool:
    """Whether rich would print to this stream without any style (not a terminal, and no
    FORCE_COLOR or TTY_COMPATIBLE=1 asking for colour anyway, as rich reads them).

    Then text is written as it is, without importing rich: that import costs ~50 ms,
    a quarter of `p2p search` or `p2p export --since` in a script."""
    env = os.environ
    if env.get("TTY_COMPATIBLE") == "1" or env.get("FORCE_COLOR"):
        return False
    try:
        return not _stream(err).isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream: rich says "no" too
        return True


def write_plain(line: str, err: bool = False) -> None:
    """One line on stdout (stderr), flushed as rich flushes after every print."""
    out = _stream(err)
    out.write(line + "\n")
    out.flush()


class _LazyConsole:
    """A `safe_console()` built on first use: importing rich costs more than `p2p whoami` may.

    `print` of plain strings (no markup to read) to a stream that is not a terminal
    writes them directly: rich would print exactly the same characters."""

    def __init__(self, err: bool = False, **kwargs: Any) -> None:
        self._err = err
        self._kwargs = kwargs
        self._console: Console | None = None

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if (
            all(isinstance(o, str) and "[" not in o for o in objects)
            and set(kwargs) <= {"markup", "highlight"}
            and plain(self._err)
        ):
            from p2p.cli.safe import clean_lines

            write_plain(clean_lines(" ".join(objects)), self._err)
            return
        self._rich().print(*objects, **kwargs)

    def _rich(self) -> Console:
        if self._console is None:
            from p2p.cli.safe import safe_console

            self._console = safe_console(stderr=self._err, **self._kwargs)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rich(), name)


err_console = cast("Console", _LazyConsole(err=True, soft_wrap=True))
console = cast("Console", _LazyConsole(soft_wrap=True))


def ask_passphrase(
    creating: bool, env: str = "P2P_PASSPHRASE", label: str = "passphrase"
) -> str | None:
    """The environment variable for scripts, else a prompt on a terminal."""
    value = os.environ.get(env)
    if value is not None:
        return value
    if not sys.stdin.isatty():
        article = "an" if label[:1] in "aeiou" else "a"
        raise WrongPassphrase(f"{article} {label} is needed: set {env} or run this from a terminal")
    return click.prompt(
        f"New {label}" if creating else label[:1].upper() + label[1:],
        hide_input=True,
        confirmation_prompt=creating,
    )


class Context:
    def __init__(self, home_path: Path | None) -> None:
        from p2p.home import default_path

        self.home_path = home_path or default_path()
        self._home: Home | None = None

    @property
    def home(self) -> Home:
        """The existing home (`NoHome` if there is none); creating one is `new_home()`'s job."""
        if self._home is None:
            from p2p.home import Home

            self._home = Home(self.home_path, ask_passphrase, create=False)
        return self._home

    def new_home(self) -> Home:
        """The home, created (0700) if it does not exist yet: init, identity import, join, demo."""
        if self._home is None:
            from p2p.home import Home

            self._home = Home(self.home_path, ask_passphrase, create=True)
        return self._home

    def adopt(self, home: Home) -> Home:
        """Use a home a command opened itself (e.g. `Home.restore`)."""
        self._home = home
        return home

    def close(self) -> None:
        if self._home is not None:
            docs = self._home.__dict__.get("docs")  # only if this command loaded documents
            for notice in docs.notices if docs is not None else []:
                warn(notice)
            self._home.close()


pass_ctx = click.make_pass_decorator(Context)

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")

force_option = click.option(
    "--force", is_flag=True, help="Replace the output file if it exists (never a device or pipe)."
)


def emit_json(data: Any) -> None:
    from p2p.cli.safe import json_safe

    click.echo(json_safe(json.dumps(data, indent=2, ensure_ascii=False, default=_default)))


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


def say(*parts: str | Text | Block | tuple[str, str], err: bool = False) -> None:
    """Print one line built from parts, none of them ever read as markup.

    A `str` is printed as it is, a `(str, style)` pair styled; both are cleaned
    of control characters (`p2p.cli.safe.clean`), so member text is safe in
    either form. A `Block` (`safe.block(post_text, prefix)`: several lines,
    already cleaned) or a rich `Text` is used as given.
    """
    from p2p.cli.safe import Block, clean

    if plain(err):  # no style would show: the same characters, without importing rich
        line = "".join(
            clean(p[0]) if isinstance(p, tuple) else clean(p) if isinstance(p, str) else p.plain
            for p in parts
        )
        write_plain(line, err)
        return
    from rich.text import Text

    pieces: list[Any] = []
    for p in parts:
        if isinstance(p, tuple):
            pieces.append((clean(p[0]), p[1]))
        elif isinstance(p, str):
            pieces.append(clean(p))
        elif isinstance(p, Block):
            pieces.append((p.plain, p.style))
        else:
            pieces.append(p)
    (err_console if err else console).print(Text.assemble(*pieces))


def warn(message: str) -> None:
    """A warning on stderr; `message` is printed as plain text, never as markup."""
    say(("warning:", "bold yellow"), " ", message, err=True)
