"""Regenerate the attachment vectors (docs/bundle-format.md §8.7) in vectors/.

    python bundles/make_attachment_vectors.py [--version 1|2]

Writes attachment.p2p, attachment-bad-chunk.p2p and attachment-invite.p2p into
the folder of that container version (vectors/ for 1, vectors/v2/ for 2, the
default), and adds their entries to its manifest.json (other entries are left
as they are). make_bundles.py runs it too. The attached file is fixed (seeded
bytes); keys are fresh on every run, the tests check outcomes, not bytes.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from p2p import community as cm  # noqa: E402
from p2p import content, invites  # noqa: E402
from p2p.blobs import attach  # noqa: E402
from p2p.bundle.container import write_bundle  # noqa: E402
from p2p.bundle.export import _records, domains  # noqa: E402
from p2p.home import Home  # noqa: E402

SIZE = 1024 * 1024 + 4096  # two chunks: a whole one and a short last one


def main(version: int = 2) -> None:
    vectors = HERE / "vectors" if version == 1 else HERE / "vectors" / f"v{version}"
    data = random.Random(13).randbytes(SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        home = Home(Path(tmp) / "home")
        home.create_identity(None)
        cm.set_profile(home, "Amara", None)
        c = cm.create(home, "Attachment vectors")
        src = Path(tmp) / "river-survey.bin"
        src.write_bytes(data)
        (entry,) = attach.add_files(home, [src], private=False)
        content.post(home, c, "The survey of the river crossing.", attachments=[entry.as_doc()])
        records = [r for d in domains([c]) for r in _records(home, d, None, None)]
        with (vectors / "attachment.p2p").open("wb") as out:
            write_bundle(out, home.identity, records, version=version)
        bad = []
        for r in records:
            if r["t"] == "blob-chunk" and r["n"] == 1:
                r = {**r, "data": bytes([r["data"][0] ^ 0x01]) + r["data"][1:]}
            bad.append(r)
        with (vectors / "attachment-bad-chunk.p2p").open("wb") as out:
            write_bundle(out, home.identity, bad, version=version)
        (vectors / "attachment-invite.p2p").write_bytes(invites.write(home, c))
        home.close()
    described = {"hash": entry.id.hex(), "sha256": hashlib.sha256(data).hexdigest(), "size": SIZE}
    path = vectors / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest["attachment.p2p"] = {
        "expect": "valid",
        "invite": "attachment-invite.p2p",
        "posts": 1,
        "attachment": described,
    }
    manifest["attachment-bad-chunk.p2p"] = {
        "expect": "bad attachment",
        "error": "BadAttachment",
        "invite": "attachment-invite.p2p",
        "posts": 1,
        "attachment": {**described, "bad_chunk": 1},
    }
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote attachment vectors in {vectors}")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", type=int, choices=(1, 2), default=2)
    main(parser.parse_args().version)
