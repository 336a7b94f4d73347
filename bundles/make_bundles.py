"""Regenerate the golden test bundles (and the demo community) in this folder.

    python bundles/make_bundles.py                # container version 2: vectors/v2/
    python bundles/make_bundles.py --version 1    # version 1: vectors/, and the demo

Writes, for `--version 1`:
  demo.p2p, demo-invite.p2p     an open community with a few members, posts,
                                replies, reactions, chat and one sealed direct
                                message (what `p2p demo` shows)
  vectors/*.p2p                 golden bundles, and vectors/manifest.json saying
                                what a correct reader must do with each
  vectors/keys/*.txt            the age identities the encrypted vectors need
and for `--version 2` the same golden bundles, manifest and keys in vectors/v2/
(the version 1 ones are left as they are: readers keep reading both).

Keys are fresh on every run; the tests check outcomes, not bytes.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from p2p import (  # noqa: E402
    chat,
    content,
    dm,
    invites,  # noqa: E402
)
from p2p import community as cm  # noqa: E402
from p2p.bundle import export as ex  # noqa: E402
from p2p.bundle.container import write_bundle  # noqa: E402
from p2p.bundle.records import community_record, inventory_records  # noqa: E402
from p2p.exchange import inventory, records_for  # noqa: E402
from p2p.feed import all_posts  # noqa: E402
from p2p.home import Home  # noqa: E402
from p2p.identity import Identity  # noqa: E402

PEOPLE = [
    ("Ha-eun", "Runs the seed swap at the river market."),
    ("Min-jun", "Fixes radios and bicycles."),
    ("Soo-ah", "Teaches reading on Saturdays."),
    ("Daniel", "Carries the stick between villages."),
]

THREADS = [
    (
        0,
        "The seed swap is on Thursday by the old bridge. Bring what you saved.",
        [
            (1, "I will bring bean seeds and the spare radio batteries."),
            (2, "Can the children come? We are reading about plants this week."),
            (0, "Of course, everyone is welcome."),
        ],
    ),
    (
        1,
        "The Wi-Fi box at the school works again: phones nearby sync on their own.",
        [
            (3, "Thank you! The stick still goes out on Mondays for the far villages."),
        ],
    ),
    (2, "Reading class moves to the community hall while the roof is repaired.", []),
    (
        3,
        "Road to the north villages is open again after the rain.",
        [
            (1, "Good news. I will send the repaired radios with the next trip."),
        ],
    ),
]

REACTIONS = [(1, 0, "🌱"), (2, 0, "👍"), (3, 0, "👍"), (0, 1, "🎉"), (2, 1, "🙏"), (0, 3, "👍")]

CHAT = [
    (3, "general", "Leaving for the north villages at six tomorrow. Anything to carry?"),
    (1, "general", "Two radios for the school, I will bring them to the bridge."),
    (0, "market", "Who still has pumpkin seeds?"),
    (2, "general", "Daniel, please take the reading books back to Soo-min."),
]

# sealed: only Ha-eun and Daniel can read it, everyone else carries it
DIRECT = [(0, 3, "The spare key to the seed store is with the teacher.")]


def build_demo(tmp: Path) -> tuple[Home, list[Home], cm.Community]:
    homes = []
    for i, (name, bio) in enumerate(PEOPLE):
        h = Home(tmp / f"person{i}")
        h.create_identity(None)
        cm.set_profile(h, name, bio)
        homes.append(h)
    owner = homes[0]
    c = cm.create(owner, "Riverside Market", description="News and swaps for the river villages")
    cm.update_settings(owner, c, rules="Be kind. No selling of aid supplies.")
    invite = invites.write(owner, c)
    for h in homes[1:]:
        invites.join(h, invite)
    cm.set_role(owner, c, homes[3].public_key, "moderator")

    def share() -> None:
        from p2p.accept import from_record

        for src in homes:
            records = [from_record(r) for r in records_for(src, None)]
            for dst in homes:
                if dst is not src:
                    dst.acceptor().accept(records)

    top_ids = []
    for author, text, replies in THREADS:
        post = content.post(homes[author], c, text)
        top_ids.append(post["id"])
        share()
        for who, reply in replies:
            content.post(homes[who], c, reply, reply_to=post["id"])
            share()
    for who, idx, emoji in REACTIONS:
        content.react(homes[who], c, top_ids[idx], emoji)
    share()
    for who, room, text in CHAT:
        chat.send(homes[who], c, text, room)
        share()
    for sender, to, text in DIRECT:
        dm.send(homes[sender], c, homes[to].public_key, text)
    share()
    return owner, homes, c


def plain_bundle(
    home: Home, c: cm.Community, out: Path, records: list[dict] | None = None, version: int = 2
) -> None:
    if records is None:
        records = [community_record(home, c), *inventory_records(inventory(home, [c.id]))]
        records += list(records_for(home, None, [c.id]))
    with out.open("wb") as fh:
        write_bundle(fh, home.identity, records, int(time.time()), version=version)


def folder(version: int) -> Path:
    """Where the vectors of a container version live."""
    return HERE / "vectors" if version == 1 else HERE / "vectors" / f"v{version}"


def _clear(vectors: Path) -> None:
    """Remove this version's vectors (the files, not another version's folder)."""
    vectors.mkdir(parents=True, exist_ok=True)
    for p in vectors.iterdir():
        if p.is_file():
            p.unlink()
    shutil.rmtree(vectors / "keys", ignore_errors=True)
    (vectors / "keys").mkdir()


def main(version: int = 2) -> None:
    vectors = folder(version)
    _clear(vectors)
    manifest: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        owner, homes, c = build_demo(tmp)
        valid = vectors / "valid.p2p"
        plain_bundle(owner, c, valid, version=version)
        (vectors / "valid-invite.p2p").write_bytes(invites.write(owner, c))
        if version == 1:  # the demo ships as the version 1 vector (older p2p read it too)
            shutil.copy(valid, HERE / "demo.p2p")
            shutil.copy(vectors / "valid-invite.p2p", HERE / "demo-invite.p2p")
        manifest["valid.p2p"] = {
            "expect": "valid",
            "invite": "valid-invite.p2p",
            "posts": len(all_posts(owner, c)),
            "authors": len(PEOPLE),
        }
        data = valid.read_bytes()

        (vectors / "truncated.p2p").write_bytes(data[: len(data) // 2])
        manifest["truncated.p2p"] = {"expect": "truncated", "error": "BundleTruncated"}
        (vectors / "truncated-trailer.p2p").write_bytes(data[:-10])
        manifest["truncated-trailer.p2p"] = {"expect": "truncated", "error": "BundleTruncated"}

        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x01
        (vectors / "tampered.p2p").write_bytes(bytes(flipped))
        manifest["tampered.p2p"] = {"expect": "corrupt", "error": "BundleError"}

        stranger = Identity.generate()
        records = [community_record(owner, c), *records_for(owner, None, [c.id])]
        with (vectors / "wrong-signer.p2p").open("wb") as fh:
            # a valid body whose trailer is signed by a key other than the header's
            write_bundle(
                fh, owner.identity, records, int(time.time()), signer=stranger, version=version
            )
        manifest["wrong-signer.p2p"] = {"expect": "bad signature", "error": "BadBundleSignature"}

        # a well-formed bundle carrying a change forged by a member in another's feed
        forged = _forged_records(owner, homes[1], c)
        plain_bundle(homes[1], c, vectors / "forged-change.p2p", forged, version)
        manifest["forged-change.p2p"] = {"expect": "forged change", "error": "ForgedChange"}

        (vectors / "empty.p2p").write_bytes(b"")
        manifest["empty.p2p"] = {"expect": "not a bundle", "error": "NotABundle"}
        (vectors / "garbage.p2p").write_bytes(b"this is not a bundle at all\n" * 8)
        manifest["garbage.p2p"] = {"expect": "not a bundle", "error": "NotABundle"}

        # private community: encrypted bundle, plus the key that opens it
        priv = cm.create(owner, "Night school", private=True)
        content.post(owner, priv, "Lessons move to Tuesday.")
        with ex.scratch_dir(owner) as s:
            built = ex.build(owner, ex.domains([priv])[0], Path(s), version=version)
            assert built is not None
            shutil.copy(built.path, vectors / "encrypted.p2p")
        (vectors / "keys" / "encrypted.txt").write_text(priv.secret + "\n")
        (vectors / "encrypted-invite.p2p").write_bytes(invites.write(owner, priv))
        manifest["encrypted.p2p"] = {
            "expect": "valid",
            "key": "keys/encrypted.txt",
            "invite": "encrypted-invite.p2p",
            "posts": 1,
        }
        from pyrage import x25519

        (vectors / "keys" / "wrong.txt").write_text(str(x25519.Identity.generate()) + "\n")
        manifest["encrypted.p2p#wrong-key"] = {
            "file": "encrypted.p2p",
            "expect": "wrong key",
            "key": "keys/wrong.txt",
            "error": "WrongKey",
        }
        for h in homes:
            h.close()
    (vectors / "manifest.json").write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    )
    print(f"wrote {len(manifest)} version {version} vectors in {vectors}")
    import make_attachment_vectors

    make_attachment_vectors.main(version)
    if version == 1:
        # the incremental-inventory vectors are reproducible byte for byte: rewrite them too
        import inventory_vectors

        for name, data in inventory_vectors.build().items():
            (vectors / name).write_bytes(data)


def _forged_records(owner: Home, intruder: Home, c: cm.Community) -> list[dict]:
    """Records in which `intruder` writes into `owner`'s feed, signed by the intruder."""
    from automerge.core import ROOT, Document, ScalarType

    from p2p import signing
    from p2p.docref import FEED, DocRef
    from p2p.documents import as_raw

    ref = DocRef(c.id, FEED, owner.public_key)
    doc = Document.load(owner.docs.data(ref.id))
    doc.set_actor(intruder.public_key)
    with doc.transaction() as tx:
        tx.put(ROOT, "note", ScalarType.Str, "forged by another member")
    change = as_raw(doc.get_last_local_change())
    sig = signing.sign(intruder.identity, ref.id, change.hash)
    record = {
        "t": "doc",
        "community": c.id,
        "kind": FEED,
        "owner": owner.public_key,
        "doc": ref.id,
        "enc": "changes",
        "data": change.data,
        "sigs": [list(sig)],
    }
    return [community_record(owner, c), *records_for(owner, None, [c.id]), record]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", type=int, choices=(1, 2), default=2)
    main(parser.parse_args().version)
