"""Text other people wrote, made harmless for a terminal.

Anything a member signs (posts, names, bios, rules, room names, reactions,
document kinds, rejection reasons) may carry terminal escape sequences (CSI
colours, OSC 8 links, OSC 0 window titles), C0/C1 control characters, or
Unicode bidi overrides that make text read differently from what it is. None
of it may reach the terminal raw, and none of it may be read as rich markup.

- `clean(s)`: one line; every control, escape and bidi character becomes a
  visible placeholder (ESC shows as "␛", so "␛[31m" is printed, not obeyed);
  line breaks show as "↵".
- `clean_block(s, prefix)`: the same, keeping line breaks, with `prefix`
  before every line after the first, so a multi-line post cannot print a line
  that looks like another author's header.
- `text(s, style)`: a `rich.text.Text` of `clean(s)`: styled, never parsed as markup.

`safe_console()` also cleans every plain string it is asked to print, as a second
line of defence for renderers that forget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich is imported on first use: `p2p whoami` must start fast
    from rich.console import Console
    from rich.text import Text

# Bidi embeddings, overrides, isolates and marks (Unicode TR9), and the line/paragraph separators.
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_SEPARATORS = "\u2028\u2029\x85"
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f" + _BIDI + _SEPARATORS + "\ud800-\udfff\ufff9-\ufffb]"
)
_LINE_BREAK = re.compile("\r\n|[\n\r\u2028\u2029\x85\x0b\x0c]")


def _placeholder(match: re.Match[str]) -> str:
    ch = match.group(0)
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # the Control Pictures block: "␛", "␇"...
    if code == 0x7F:
        return "\u2421"  # ␡
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    return f"<U+{code:04X}>"


def clean(value: object) -> str:
    """One line of member text, safe to print (never `None`: that becomes "")."""
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    s = _LINE_BREAK.sub("\u21b5", s).replace("\t", " ")
    return _UNSAFE.sub(_placeholder, s)


def clean_block(value: object, prefix: str = "") -> str:
    """Several lines of member text; lines after the first start with `prefix`."""
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    lines = _LINE_BREAK.split(s)
    return ("\n" + prefix).join(clean(line) for line in lines)


def text(value: object, style: str = "") -> Text:
    """Member text as a styled rich `Text` (no markup, no emoji codes, no escapes)."""
    from rich.text import Text

    return Text(clean(value), style=style)


@dataclass(frozen=True)
class Block:
    """Several lines of member text, cleaned (`clean_block`), for `say`: plain text
    needs no rich import, a terminal gets it styled."""

    plain: str
    style: str = ""


def block(value: object, prefix: str = "", style: str = "") -> Block:
    """Several lines of member text as one `Block`, continuation lines after `prefix`."""
    return Block(clean_block(value, prefix), style)


def clean_lines(s: str) -> str:
    """Every control, escape and bidi character made visible, line breaks ("\\n") kept:
    what `safe_console()` does to any plain string it prints."""
    return "\n".join(_UNSAFE.sub(_placeholder, line.replace("\t", " ")) for line in s.split("\n"))


def is_clean(s: str) -> bool:
    """No control, escape or bidi character (line breaks allowed)."""
    return _UNSAFE.search(s.replace("\n", "")) is None


def safe_console(**kwargs: Any) -> Console:
    """A rich console that never lets a control character from a plain string through,
    and reads no emoji codes (":smile:") in what it prints."""
    from rich.console import Console

    class SafeConsole(Console):
        def render_str(self, text: str, **kw: Any) -> Text:  # type: ignore[override]
            return super().render_str(clean_lines(text), **kw)

    kwargs.setdefault("emoji", False)
    kwargs.setdefault("highlight", False)
    return SafeConsole(**kwargs)


def json_safe(dumped: str) -> str:
    """JSON text with C1 controls and bidi characters written as \\u escapes (same value)."""
    return re.sub(
        "[\x7f-\x9f" + _BIDI + _SEPARATORS + "]",
        lambda m: f"\\u{ord(m.group(0)):04x}",
        dumped,
    )
