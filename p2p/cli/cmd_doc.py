"""`p2p doc list|export`: documents as standard Automerge files."""

from __future__ import annotations

from pathlib import Path

import click

from p2p import atomic
from p2p import community as cm
from p2p.cli import safe
from p2p.cli.context import Context, emit_json, force_option, json_option, pass_ctx, plural, say
from p2p.errors import AmbiguousId, P2PError
from p2p.identity import fingerprint


@click.group()
def doc() -> None:
    """List and export the Automerge documents behind a community."""


def _rows(ctx: Context, community_id: str) -> list[dict]:
    home = ctx.home
    c = cm.resolve(home, community_id)
    out = []
    for doc_id, kind, owner in home.store.db.execute(
        "SELECT id, kind, owner FROM docs WHERE community = ? ORDER BY kind, owner", (c.id,)
    ):
        out.append(
            {
                "id": doc_id.hex(),
                "kind": kind,
                "owner": owner.hex(),
                "owner_fingerprint": fingerprint(owner),
                "owner_name": cm.display_name(home, c, owner),
                "heads": [h.hex() for h in home.docs.heads(doc_id)],
            }
        )
    return out


@doc.command("list")
@click.argument("community_id")
@json_option
@pass_ctx
def list_(ctx: Context, community_id: str, as_json: bool) -> None:
    """Name the documents of a community."""
    rows = _rows(ctx, community_id)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        kind = f"{safe.clean(r['kind']):9}"
        say(f"{r['id']}  ", kind, f"  {r['owner_fingerprint']}  ", r["owner_name"] or "")


@doc.command("export")
@click.argument("doc_id")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@force_option
@json_option
@pass_ctx
def export(ctx: Context, doc_id: str, out: Path, force: bool, as_json: bool) -> None:
    """Write one document as a standard Automerge file (loadable by any Automerge)."""
    atomic.check_destination(out, force)
    home = ctx.home
    wanted = doc_id.lower()
    found = [i for i in home.docs.ids() if i.hex().startswith(wanted)] if len(wanted) >= 6 else []
    if not found:
        raise P2PError(f"no document {doc_id!r}: see 'p2p doc list COMMUNITY'")
    if len(found) > 1:
        raise AmbiguousId()
    loaded = home.docs.load(found[0])
    assert loaded is not None
    atomic.write_bytes(out, loaded.save(), force=force)
    if as_json:
        emit_json(
            {
                "id": found[0].hex(),
                "file": str(out),
                "bytes": out.stat().st_size,
                "heads": [h.hex() for h in loaded.get_heads()],
            }
        )
        return
    say(f"Wrote {found[0].hex()} to {out} ({plural(out.stat().st_size, 'byte')})")
