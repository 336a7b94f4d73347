"""What one document entry may hold, checked before it reaches an index.

Every value here was signed by some member and may be hostile: a `ts` that is
a map or 2^62, a post that is a list, a ban key that is not hex. Each checker
returns the row to index, or None for an entry that is skipped and counted.
A missing field takes its default; a field of the wrong type spoils the entry.
"""

from __future__ import annotations

from typing import Any

import msgpack

MAX_TS = 253_402_300_799_999  # 9999-12-31 in milliseconds: any later time cannot be shown
DEFAULT_ROOM = "general"


def _time(entry: dict, key: str, default: int | None) -> tuple[bool, int | None]:
    if key not in entry:
        return True, default
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TS:
        return False, None
    return True, value


def post(entry: Any) -> tuple[str, int, str | None, int | None, bool] | None:
    """(text, ts, parent, edited, deleted) of a feed's post, or None if malformed."""
    if not isinstance(entry, dict):
        return None
    text = entry.get("text", "")
    parent = entry.get("parent")
    if not isinstance(text, str) or not (parent is None or isinstance(parent, str)):
        return None
    ok_ts, ts = _time(entry, "ts", 0)
    ok_edited, edited = (
        (True, None) if entry.get("edited") is None else _time(entry, "edited", None)
    )
    if not ok_ts or not ok_edited or ts is None:
        return None
    return text, ts, parent, edited, entry.get("deleted") is not None


def attachments(entry: dict) -> bytes | None:
    """A post's raw `attachments` value, kept as signed (p2p.blobs parses it when shown);
    None when absent or not representable."""
    value = entry.get("attachments")
    if value is None:
        return None
    try:
        return msgpack.packb(value)
    except (TypeError, ValueError, OverflowError):
        return None


def unpack_attachments(blob: bytes | None) -> Any:
    return None if blob is None else msgpack.unpackb(blob, raw=False, strict_map_key=False)


def reaction(entry: Any) -> list[str] | None:
    """The emojis of one reactor on one post."""
    if not isinstance(entry, dict):
        return None
    return [e for e in entry if isinstance(e, str)]


def message(entry: Any) -> tuple[str, str, int] | None:
    """(room, text, ts) of a chat message."""
    if not isinstance(entry, dict):
        return None
    room = entry.get("room", DEFAULT_ROOM)
    text = entry.get("text", "")
    ok, ts = _time(entry, "ts", 0)
    if not isinstance(room, str) or not isinstance(text, str) or not ok or ts is None:
        return None
    return room, text, ts


def box(entry: Any) -> tuple[bytes, int] | None:
    """(sealed box, ts) of a direct message."""
    if not isinstance(entry, dict) or not isinstance(entry.get("box"), bytes):
        return None
    ok, ts = _time(entry, "ts", 0)
    return entry["box"], ts if ok and ts is not None else 0


def member_key(key: Any) -> str | None:
    """A key naming a member, as the views read it (hex, any case), normalised."""
    if not isinstance(key, str):
        return None
    try:
        return bytes.fromhex(key).hex()
    except ValueError:
        return None
