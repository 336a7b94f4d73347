"""Sizes as people write and read them ('200M', '1.5 GiB'): their own module, so
commands that only parse an option or print a size never import the chunk store."""

from __future__ import annotations


def parse_size(text: str) -> int:
    """'200M', '1.5G', '64k', '1000' -> bytes."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        if t and t[-1] in units:
            value = int(float(t[:-1]) * units[t[-1]])
        else:
            value = int(t)
    except ValueError:
        raise ValueError(f"{text!r} is not a size (try 200M or 2G)") from None
    if value < 0:
        raise ValueError("a size cannot be negative")
    return value


def human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
