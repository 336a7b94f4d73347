"""`p2p export`: write bundles of what you have (or what a peer lacks)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from p2p import atomic
from p2p import community as cm
from p2p.blobs.exchange import Plan, known_have, known_wants
from p2p.blobs.sizes import parse_size
from p2p.bundle import export as ex
from p2p.bundle.inventories import kept_inventory
from p2p.bundle.parts import bundle_paths
from p2p.cli.cmd_attach import plan_lines
from p2p.cli.context import (
    Context,
    ask_passphrase,
    console,
    emit_json,
    force_option,
    json_option,
    pass_ctx,
    plural,
    say,
    warn,
)
from p2p.cli.progress import meter
from p2p.errors import P2PError
from p2p.exchange import known_by, merge

# Imported where used, on the branches that need them: the peer table (--for), the
# bundle reader and its keys (--since a bundle this home did not write or import).

bundle_version_option = click.option(
    "--bundle-version",
    type=click.IntRange(1, 2),
    default=2,
    show_default=True,
    help="Bundle format: 1 only for recipients whose p2p is older (it cannot read 2).",
)


@click.command("export")
@click.argument("communities", nargs=-1)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Bundle file, or a folder to write one file per encryption domain.",
)
@force_option
@click.option(
    "--for",
    "for_peer",
    metavar="PEER",
    help="Only what this peer (fingerprint or name) is known to lack.",
)
@click.option(
    "--since",
    "since",
    type=click.Path(exists=True, path_type=Path),
    metavar="BUNDLE",
    help="Only what is new since that earlier bundle (e.g. your last export) was made.",
)
@click.option(
    "--passphrase",
    "use_passphrase",
    is_flag=True,
    help="Encrypt with a passphrase (P2P_BUNDLE_PASSPHRASE or a prompt) instead.",
)
@click.option(
    "--max-size",
    metavar="SIZE",
    help="Fit within SIZE (e.g. 700M): all text first, then attachments newest first.",
)
@click.option("--no-attachments", is_flag=True, help="Send only text, no attachment data.")
@bundle_version_option
@json_option
@pass_ctx
def export(
    ctx: Context,
    communities: tuple[str, ...],
    out: Path,
    force: bool,
    for_peer: str | None,
    since: Path | None,
    use_passphrase: bool,
    max_size: str | None,
    no_attachments: bool,
    bundle_version: int,
    as_json: bool,
) -> None:
    """Write COMMUNITIES (default: all) to a bundle file for a USB stick."""
    if not out.is_dir():
        atomic.check_destination(out, force)
    home = ctx.home
    chosen = ex.select(home, [cm.resolve(home, c) for c in communities])
    if not chosen:
        raise P2PError("you are in no community yet: nothing to export")
    peer = None
    blob_have: dict = {}
    if for_peer:
        from p2p.peers import resolve_peer

        peer_key = resolve_peer(home, for_peer)
        peer = known_by(home, peer_key)
        blob_have = known_have(home, peer_key)
    base = None
    if since:
        paths = bundle_paths(since)
        kept = kept_inventory(home, paths)
        if kept is not None:
            earlier = kept[2]
            if kept[0] == home.public_key:
                base = kept[1]  # list only what changed since that bundle's inventory
        else:
            from p2p.bundle.verify import inventory_of
            from p2p.cli import bundle_keys

            earlier = inventory_of(paths, bundle_keys.for_import(ctx, [since]), home)
        peer = earlier if peer is None else merge(peer, earlier)
    passphrase = None
    if use_passphrase:
        from p2p.cli import bundle_keys

        passphrase = ask_passphrase(True, bundle_keys.PASSPHRASE_ENV, "bundle passphrase")
        if not passphrase:
            raise click.UsageError("an empty bundle passphrase is not allowed")
    plan = ex.domains(chosen)
    if len(plan) > 1 and not out.is_dir():
        raise P2PError(
            f"these communities need {len(plan)} separate files (each private community is "
            "encrypted on its own): give a folder as --out, or fewer communities"
        )
    written: list[dict[str, Any]] = []
    with ex.scratch_dir(home) as tmp:
        budget = parse_size(max_size) if max_size else None
        plans = []
        for domain in plan:
            blobs = Plan(budget, not no_attachments, blob_have, known_wants(home))
            plans.append(blobs)
            dest = out / f"{os.urandom(8).hex()}.p2p" if out.is_dir() else out
            with meter(f"exporting {domain.label}", unit="documents") as update:
                built = ex.build(
                    home,
                    domain,
                    Path(tmp),
                    peer=peer,
                    passphrase=passphrase,
                    progress=lambda n, total, docs: update(n, total, docs),
                    base=base,
                    plan=blobs,
                    # written once, in the destination's folder, then renamed
                    out_dir=dest.parent if dest.parent.is_dir() else None,
                    version=bundle_version,
                )
            if built is None:
                continue
            ex.place(built, dest, force=force)
            written.append(
                {
                    "file": str(dest),
                    "bytes": built.size,
                    "documents": built.docs,
                    "encrypted": built.encrypted,
                    "communities": [c.hex for c in domain.communities],
                    "attachment_bytes": blobs.sent_bytes,
                    "left_for_later": blobs.left,
                }
            )
    if as_json:
        emit_json(written)
        return
    if not written:
        who = "the peer already has" if for_peer else "that bundle already held"
        console.print(f"Nothing to export: {who} everything you have.")
    for w in written:
        lock = "encrypted" if w["encrypted"] else "signed, not encrypted"
        docs = plural(w["documents"], "document")
        size = plural(w["bytes"], "byte")
        console.print(f"Wrote {w['file']}: {docs}, {size} ({lock})")
    for blobs in plans:
        for line in plan_lines(blobs):
            say("  ", line)
    if passphrase:
        warn("anyone who knows the passphrase can read this bundle")
