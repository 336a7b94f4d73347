"""Checking a bundle without touching any store.

Structure, trailer hash and exporter signature (by the container reader),
then every document record through the same rules the acceptance path uses:
signatures, author coverage, document ownership, and roles for the shared
community document as far as the bundle itself shows them. Works with no
identity at all for open bundles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from automerge.core import ROOT, ObjType

from p2p.accept import Incoming, evaluate, from_record, vouched_line
from p2p.blobs.check import BlobCheck, hash_only
from p2p.bundle.importer import Listed
from p2p.bundle.inventories import kept_inventory
from p2p.bundle.records import parse_community, parse_inventory
from p2p.bundle.source import Keys, open_bundle
from p2p.docref import CHAT, COMMUNITY, DM, FEED, PROFILE
from p2p.errors import BundleCorrupt
from p2p.exchange import Inventory, merge
from p2p.home import Home
from p2p.identity import fingerprint


@dataclass
class DocSummary:
    doc: bytes
    community: bytes
    kind: str
    owner: bytes
    changes: int
    sigs: int
    posts: int = 0
    messages: int = 0  # chat messages, or sealed direct messages
    name: str | None = None
    unchecked: int = 0  # changes whose history is not in this bundle


@dataclass
class VerifyResult:
    exporter: bytes
    created: int
    encrypted: bool
    records: int = 0
    communities: dict[bytes, dict] = field(default_factory=dict)
    docs: list[DocSummary] = field(default_factory=list)
    inventory_docs: int = 0
    signatures_checked: int = 0
    faults: list[str] = field(default_factory=list)
    blobs: BlobCheck = field(default_factory=BlobCheck)

    @property
    def ok(self) -> bool:
        return not self.faults

    @property
    def authors(self) -> dict[bytes, str]:
        names: dict[bytes, str] = {}
        for d in self.docs:
            if d.kind != COMMUNITY:
                names.setdefault(d.owner, "")
            if d.kind == PROFILE and d.name:
                names[d.owner] = d.name
        return names

    def as_json(self) -> dict:
        return {
            "ok": self.ok,
            "exporter": self.exporter.hex(),
            "exporter_fingerprint": fingerprint(self.exporter),
            "created": self.created,
            "encrypted": self.encrypted,
            "records": self.records,
            "communities": [
                {"id": cid.hex(), **info} for cid, info in sorted(self.communities.items())
            ],
            "authors": [
                {"public_key": k.hex(), "fingerprint": fingerprint(k), "name": n}
                for k, n in sorted(self.authors.items())
            ],
            "documents": len(self.docs),
            "changes": sum(d.changes for d in self.docs),
            "posts": sum(d.posts for d in self.docs),
            "messages": sum(d.messages for d in self.docs),
            "signatures_checked": self.signatures_checked,
            "unchecked_changes": sum(d.unchecked for d in self.docs),
            "faults": self.faults,
            "attachments": self.blobs.as_json(),
        }


def verify_bundle(
    paths: list[Path],
    keys: Keys | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyResult:
    """Raises a BundleError for a structural fault; content faults are listed."""
    read = (lambda n: progress(n, 0)) if progress else None
    with open_bundle(paths, keys, stage=hash_only, progress=read, hash_file=False) as opened:
        reader = opened.reader
        result = VerifyResult(reader.header.exporter, reader.header.created, opened.encrypted)
        owners: dict[bytes, bytes] = {}
        seen: dict[bytes, tuple[set[bytes], bytes]] = {}
        changes = 0
        for record in reader.records():
            result.records += 1
            if progress:
                progress(reader.offset, changes)
            kind = record.get("t")
            try:
                if kind == "community":
                    d = parse_community(record)
                    owners[d.id] = d.owner
                    result.communities[d.id] = {
                        "name": d.name,
                        "private": d.private,
                        "owner": fingerprint(d.owner),
                    }
                elif kind == "inventory":
                    result.inventory_docs += len(parse_inventory(record))
                elif kind == "doc":
                    _check_doc(result, record, owners, seen)
                    changes += result.docs[-1].changes
                elif kind in ("blob-manifest", "blob-chunk"):
                    result.blobs.take(record, f"record {result.records}")
            except ValueError as exc:
                result.faults.append(f"record {result.records}: {exc}")
    result.faults += result.blobs.faults
    return result


def _check_doc(
    result: VerifyResult,
    record: dict,
    owners: dict[bytes, bytes],
    seen: dict[bytes, tuple[set[bytes], bytes]],
) -> None:
    """Check one record, given what earlier records of the same document held."""
    inc = from_record(record)
    ref = inc.ref
    if ref.id != inc.claimed_id:
        raise ValueError("document id does not match its community, kind and owner")
    community_owner = owners.get(ref.community)
    if community_owner is None:
        raise ValueError("document of a community the bundle does not describe")
    if ref.kind == COMMUNITY and ref.owner != community_owner:
        raise ValueError("community document not owned by the community's owner")
    line = vouched_line(inc) if ref.id not in seen else None
    if line is not None:  # the owner's one line, signed on its head: nothing to list
        seen[ref.id] = ({line.head}, b"")  # a later record of it builds on the head
        result.signatures_checked += len(inc.sigs)
        n = line.changes
        summary = DocSummary(ref.id, ref.community, ref.kind, ref.owner, n, len(inc.sigs))
        _describe(result, inc, summary)
        return
    known, earlier = seen.get(ref.id, (set(), b""))
    pool = {c.hash: c for c in inc.changes if c.hash not in known}
    verdict = evaluate(ref, pool, inc.sigs, known, earlier, community_owner)
    known.update(verdict.ready)
    if ref.kind == COMMUNITY:
        earlier += b"".join(pool[h].data for h in verdict.ready)
    seen[ref.id] = (known, earlier)
    result.signatures_checked += len(inc.sigs)
    summary = DocSummary(ref.id, ref.community, ref.kind, ref.owner, len(pool), len(inc.sigs))
    summary.unchecked = len(verdict.waiting)
    _describe(result, inc, summary)
    what = f"{ref.kind} of {fingerprint(ref.owner)}"
    for h in verdict.bad_sigs:
        result.faults.append(f"{what}: a signature does not verify (change {h.hex()[:12]})")
    for h, reason in verdict.rejected.items():
        if h in verdict.bad_sigs:
            continue  # already listed: its signature does not verify
        result.faults.append(f"{what}: change {h.hex()[:12]} {reason}")


def _describe(result: VerifyResult, inc: Incoming, summary: DocSummary) -> None:
    """What a document record holds, for people (posts, messages, a name)."""
    ref = inc.ref
    if inc.loaded is not None:
        if ref.kind == FEED:
            got = inc.loaded.get(ROOT, "posts")
            summary.posts = inc.loaded.length(got[1]) if got else 0
        if ref.kind in (CHAT, DM):
            got = inc.loaded.get(ROOT, "messages" if ref.kind == CHAT else "boxes")
            summary.messages = inc.loaded.length(got[1]) if got else 0
        if ref.kind == PROFILE:
            got = inc.loaded.get(ROOT, "name")
            summary.name = str(got[0][1]) if got and not isinstance(got[0], ObjType) else None
    else:
        summary.posts = 0
    result.docs.append(summary)


def inventory_of(
    paths: list[Path], keys: Keys | None = None, home: Home | None = None
) -> Inventory:
    """The exporter's inventory carried by a bundle, once the whole bundle verifies
    (so a damaged earlier bundle can never make a later export leave things out),
    with its older-hash hints: every hash listed is one its writer held.

    With `home`: a bundle this home wrote or imported is looked up, not re-read,
    and an incremental inventory is rebuilt from the base this home holds (else
    only the documents it lists are known: an export after it sends more, never less).
    """
    if home is not None:
        kept = kept_inventory(home, paths)
        if kept is not None:
            return kept[2]
    listed = Listed()
    # chunks are only hashed (the rest is held): a bundle with attachments is read once
    with open_bundle(paths, keys, stage=hash_only, hash_file=False) as opened:
        for record in opened.reader.records():
            if record.get("t") == "inventory":
                try:
                    listed.add(record)
                except ValueError as exc:
                    raise BundleCorrupt(f"this bundle's inventory is malformed ({exc})") from exc
        exporter = opened.reader.header.exporter
    full = listed.full(home, exporter)
    if full is None:
        full = {d: h for d, h in listed.docs.items() if h}
    return {doc: heads for doc, heads in merge(full, listed.have).items() if doc in full}
