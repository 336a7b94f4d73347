"""Which entries a change touched, read from Automerge's patches.

The binding (automerge 0.2.0.dev4) gives `Document.diff(before, after)` as
opaque `Patch` objects whose only readable form is Rust's `Debug` text. From
that text we take the first two map keys of each patch's path (for a feed:
`posts` and the post's key), which is all an index needs to re-read just the
entries that changed. Anything we cannot read with certainty makes the caller
fall back to re-reading the whole document: wrong is never an option, slow is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

WHOLE = "*"  # the key meaning "every entry of this top-level object"

_OBJ = re.compile(r'Root|Id\(\d+, ActorID\("[0-9a-f]*"\), \d+\)')
_STR = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
_ESC = re.compile(r"\\(u\{[0-9a-fA-F]{1,6}\}|.)", re.S)
_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


class Unreadable(ValueError):
    """A patch whose text we cannot parse with certainty."""


def _unescape(body: str) -> str:
    def one(m: re.Match[str]) -> str:
        esc = m.group(1)
        if esc.startswith("u{"):
            return chr(int(esc[2:-1], 16))
        if esc in _SIMPLE:
            return _SIMPLE[esc]
        raise Unreadable(f"unknown escape \\{esc}")

    return _ESC.sub(one, body)


def _string(text: str, pos: int) -> tuple[str, int]:
    m = _STR.match(text, pos)
    if m is None:
        raise Unreadable("expected a string")
    return _unescape(m.group(1)), m.end()


def _expect(text: str, pos: int, lit: str) -> int:
    if not text.startswith(lit, pos):
        raise Unreadable(f"expected {lit!r} at {pos}")
    return pos + len(lit)


def parse(text: str) -> tuple[list[str | int], str, str | None]:
    """(path keys, action name, action key) of one patch's Debug text."""
    pos = _expect(text, 0, "Patch { obj: ")
    m = _OBJ.match(text, pos)
    if m is None:
        raise Unreadable("expected an object id")
    pos = _expect(text, m.end(), ", path: [")
    path: list[str | int] = []
    while not text.startswith("]", pos):
        if path:
            pos = _expect(text, pos, ", ")
        pos = _expect(text, pos, "(")
        m = _OBJ.match(text, pos)
        if m is None:
            raise Unreadable("expected an object id in the path")
        pos = _expect(text, m.end(), ", ")
        if text.startswith("Map(", pos):
            elem, pos = _string(text, pos + 4)
            path.append(elem)
            pos = _expect(text, pos, "))")
        elif text.startswith("Seq(", pos):
            end = text.index(")", pos)
            path.append(int(text[pos + 4 : end]))
            pos = _expect(text, end, "))")
        else:
            raise Unreadable("unknown path element")
    pos = _expect(text, pos, "], action: ")
    m = re.compile(r"[A-Za-z]+").match(text, pos)
    if m is None:
        raise Unreadable("expected an action")
    action, pos = m.group(0), m.end()
    key: str | None = None
    if text.startswith(" { key: ", pos):
        key, pos = _string(text, pos + len(" { key: "))
    return path, action, key


def touched(patches: Iterable[object]) -> dict[str, set[str]]:
    """Top-level key -> the second-level keys changed under it (WHOLE: all of them).

    Raises Unreadable when a patch cannot be read; the caller re-reads the document.
    """
    out: dict[str, set[str]] = {}
    for patch in patches:
        path, _action, key = parse(repr(patch))
        if not path:
            if key is None:
                raise Unreadable("a change at the root without a key")
            out.setdefault(key, set()).add(WHOLE)
            continue
        top = path[0]
        if not isinstance(top, str):
            raise Unreadable("the root is not a map")
        sub = path[1] if len(path) > 1 else key
        if not isinstance(sub, str):
            out.setdefault(top, set()).add(WHOLE)
        else:
            out.setdefault(top, set()).add(sub)
    return out
