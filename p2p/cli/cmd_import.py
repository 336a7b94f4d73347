"""`p2p import`: verify bundles, then apply what is new."""

from __future__ import annotations

from pathlib import Path

import click

from p2p.bundle.importer import ImportResult, import_bundle
from p2p.bundle.parts import bundle_paths
from p2p.cli import bundle_keys
from p2p.cli.cmd_attach import attachment_lines, attachments_json
from p2p.cli.context import Context, console, emit_json, json_option, pass_ctx, plural, say
from p2p.cli.progress import meter
from p2p.errors import P2PError
from p2p.news import News


def describe(r: ImportResult) -> dict:
    return {
        "files": [str(p) for p in r.files],
        "exporter": r.exporter.hex(),
        "exporter_fingerprint": r.exporter_fingerprint,
        "created": r.created,
        "applied_changes": r.report.applied,
        "already_known": r.report.already,
        "pending": r.report.pending,
        **r.news.as_json(),
        "rejected": [
            {"doc": x.doc.hex(), "change": x.change.hex() if x.change else None, "reason": x.reason}
            for x in r.report.rejected
        ],
        "forks": r.report.fork_lines,
        "set_aside": r.report.set_aside,
        "skipped_communities": r.skipped_communities,
        "imported_before": r.already_imported,
        "attachments": attachments_json(r.attachments),
    }


def _size(file: Path) -> int | None:
    try:
        return sum(p.stat().st_size for p in bundle_paths(file))
    except (OSError, P2PError):
        return None  # opening it reports the real problem


def news_line(n: News) -> str:
    parts = [plural(n.posts, "new post"), plural(n.members, "new member")]
    if n.chat_messages:
        parts.append(plural(n.chat_messages, "new chat message"))
    if n.direct_messages:
        parts.append(plural(n.direct_messages, "direct message") + " for you")
    return ", ".join(parts)


def summary_line(r: ImportResult) -> str:
    parts = [
        news_line(r.news),
        f"{plural(r.report.applied, 'change')} applied",
        f"{r.report.already} already known",
    ]
    if r.report.pending:
        parts.append(f"{r.report.pending} waiting for earlier bundles")
    if r.report.rejected:
        parts.append(f"{len(r.report.rejected)} REJECTED")
    if r.report.set_aside:
        parts.append(f"{plural(r.report.set_aside, 'earlier change')} set aside (fork or demotion)")
    return ", ".join(parts)


@click.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@json_option
@pass_ctx
def import_(ctx: Context, files: tuple[Path, ...], as_json: bool) -> None:
    """Verify and import bundle FILES (parts of one bundle are found automatically)."""
    home = ctx.home
    keys = bundle_keys.for_import(ctx, files)
    results = []
    done: set[Path] = set()
    for f in files:
        if f in done:
            continue
        with meter(f"importing {f.name}", _size(f), "changes applied") as update:
            r = import_bundle(home, [f], keys=keys, progress=lambda n, c: update(n, count=c))
        done.update(r.files)
        results.append(r)
    rejected = sum(len(r.report.rejected) for r in results)
    if as_json:
        emit_json([describe(r) for r in results])  # lists what was rejected, and why
        if rejected:
            raise SystemExit(1)
        return
    _print(results)
    if rejected:
        raise P2PError(
            f"{plural(rejected, 'change')} {'was' if rejected == 1 else 'were'} rejected "
            "(forged or not allowed) and left out; everything else was imported"
        )


def _print(results: list[ImportResult]) -> None:
    for r in results:
        console.print(
            f"{r.files[0].name} from {r.exporter_fingerprint}: {summary_line(r)}", markup=False
        )
        for x in r.report.rejected[:20]:
            what = x.change.hex()[:12] if x.change else "record"
            console.print(f"  rejected {what}: {x.reason}", markup=False)
        for line in r.report.fork_lines:
            console.print(f"  {line}", markup=False)
        for line in attachment_lines(r.attachments):
            say("  ", line)
        if r.skipped_communities:
            console.print(
                f"  skipped {plural(len(r.skipped_communities), 'community')} you have not joined"
            )
