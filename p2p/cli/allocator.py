"""Keep freed large buffers in the process while a command moves attachments.

Why: moving an attachment allocates and frees a buffer of about 1 MiB per chunk
(read, sealed, checked) on several threads. By default glibc gives each freed
one back to the kernel (munmap, or a trim of the heap top), so the next one
faults in freshly zeroed pages: some 256k page faults per GiB, in kernel time
on the critical path. Measured with `python -m bench.bench_attachments`, the
same code one run after the other: every step 8-17% faster with this.

Only for the short commands that move bulk data (`BULK`, and `post` or `chat`
given `--attach`): a long-lived process (`serve`, `app`) keeps its default, so
memory it freed goes back to the system. glibc only (mallopt); elsewhere nothing.
"""

from __future__ import annotations

BULK = {"export", "import", "verify", "usb", "attachment", "sync"}
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
KEEP = 64 << 20  # free heap top kept before trimming
DIRECT = 32 << 20  # allocations from this size are still their own mapping (glibc's maximum)


def command_of(args: list[str]) -> str | None:
    """The top-level command named on a `p2p` command line (options skipped)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--home":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def moves_bulk(args: list[str]) -> bool:
    name = command_of(args)
    return name in BULK or (name in ("post", "chat") and "--attach" in args)


def keep_large_buffers() -> None:
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt(_M_MMAP_THRESHOLD, DIRECT)
    mallopt(_M_TRIM_THRESHOLD, KEEP)
