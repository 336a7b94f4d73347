"""Refresh the catalogues from the code: extract, then merge into each .po.

  .venv/bin/python -m p2p.app.locale.update

A translator then edits p2p/app/locale/<lang>/LC_MESSAGES/messages.po (any
gettext tool works: Poedit, Lokalize, a text editor); the app reads it at
start-up.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
APP = HERE.parent


def main() -> None:
    pybabel = str(Path(sys.executable).parent / "pybabel")
    pot = HERE / "messages.pot"
    subprocess.run(
        [
            pybabel,
            "extract",
            "-F",
            str(APP / "babel.cfg"),
            "-k",
            "_",
            "-k",
            "N_",
            "-k",
            "ngettext:1,2",
            "--no-location",
            "--width=100",
            "-o",
            str(pot),
            str(APP),
        ],
        check=True,
    )
    subprocess.run(
        [pybabel, "update", "--no-fuzzy-matching", "-i", str(pot), "-d", str(HERE)], check=True
    )


if __name__ == "__main__":
    main()
