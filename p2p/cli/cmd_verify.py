"""`p2p verify` and `p2p inspect`: check a bundle without importing it."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from p2p.bundle.parts import bundle_paths
from p2p.bundle.verify import VerifyResult, verify_bundle
from p2p.cli import bundle_keys, safe
from p2p.cli.context import Context, console, emit_json, json_option, plural, say
from p2p.cli.progress import meter
from p2p.errors import BundleError, P2PError
from p2p.identity import fingerprint


def _size(file: Path) -> int | None:
    try:
        return sum(p.stat().st_size for p in bundle_paths(file))
    except (OSError, P2PError):
        return None  # opening it reports the real problem


def _when(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _verified(ctx: Context, file: Path, as_json: bool) -> VerifyResult:
    """Verify; a structural fault becomes a JSON verdict under --json, else an error."""
    try:
        keys = bundle_keys.for_reading(ctx, [file])
        with meter(f"verifying {file.name}", _size(file), "changes") as update:
            return verify_bundle([file], keys, lambda n, c: update(n, count=c))
    except BundleError as exc:
        if as_json:
            verdict = {"ok": False, "faults": [str(exc)], "error": str(exc), "kind": exc.kind}
            emit_json({**verdict, **exc.fields})
            sys.exit(1)
        raise


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@json_option
@click.pass_obj
def verify(ctx: Context, file: Path, as_json: bool) -> None:
    """Check a bundle's structure, trailer and every signature, without importing."""
    result = _verified(ctx, file, as_json)
    data = result.as_json()
    if as_json:
        emit_json(data)
    else:
        _print(result, data)
    if not result.ok:
        if not as_json:
            say(("error:", "bold red"), f" {result.faults[0]}", err=True)
        sys.exit(1)


def _print(result: VerifyResult, data: dict) -> None:
    status = "[bold green]OK[/]" if result.ok else "[bold red]FAILED[/]"
    console.print(
        f"{status}  signed by {data['exporter_fingerprint']} on {_when(result.created)}"
        f"{'  (encrypted)' if result.encrypted else ''}"
    )
    for c in data["communities"]:
        say(
            f"  community {c['id'][:12]} ",
            repr(safe.clean(c["name"])),
            f" ({'private' if c['private'] else 'open'}, owner {c['owner']})",
        )
    names = ", ".join(f"{safe.clean(a['name']) or '?'} {a['fingerprint']}" for a in data["authors"])
    say(f"  authors: {names or 'none'}")
    console.print(
        f"  {plural(data['documents'], 'document')}, {plural(data['changes'], 'change')}, "
        f"{plural(data['posts'], 'post')}, "
        + (f"{plural(data['messages'], 'message')}, " if data["messages"] else "")
        + f"{plural(data['signatures_checked'], 'signature')} checked"
    )
    if (att := data["attachments"])["chunks_checked"] or att["attachments"]:
        console.print(
            f"  {plural(att['attachments'], 'attachment')}: "
            f"{plural(att['chunks_checked'], 'chunk')} ({plural(att['bytes_checked'], 'byte')}) "
            "hash-checked against their manifests"
        )
    if n := data["unchecked_changes"]:
        console.print(
            f"  {plural(n, 'change')} {'builds' if n == 1 else 'build'} on history not in "
            "this bundle; checked on import"
        )


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@json_option
@click.pass_obj
def inspect(ctx: Context, file: Path, as_json: bool) -> None:
    """List what a bundle contains, document by document."""
    result = _verified(ctx, file, as_json)
    data = result.as_json()
    if as_json:
        data["document_list"] = [
            {
                "id": d.doc.hex(),
                "community": d.community.hex(),
                "kind": d.kind,
                "owner": d.owner.hex(),
                "owner_fingerprint": fingerprint(d.owner),
                "changes": d.changes,
                "signatures": d.sigs,
                "posts": d.posts,
                "messages": d.messages,
                "name": d.name,
            }
            for d in result.docs
        ]
        emit_json(data)
        sys.exit(0 if result.ok else 1)
    _print(result, data)
    for d in result.docs:
        who = fingerprint(d.owner)
        extra = f", {plural(d.posts, 'post')}" if d.posts else ""
        extra += f", {plural(d.messages, 'message')}" if d.messages else ""
        extra += f", name {safe.clean(d.name)!r}" if d.name else ""
        say(
            f"  {safe.clean(d.kind):9} {d.doc.hex()[:12]} by {who}: "
            f"{plural(d.changes, 'change')}, {plural(d.sigs, 'signature')}{extra}"
        )
    for fault in result.faults:
        say("  ", ("fault:", "red"), f" {fault}")
    if not result.ok:
        sys.exit(1)
