"""A hostile member's validly signed oddities reach the app's pages: wrong
types, huge and negative timestamps, a name full of terminal escapes and a
bidi override. Every page still renders, as text, with the honest posts."""

from __future__ import annotations

from automerge.core import ROOT, ScalarType

from p2p import community as cm
from p2p import content, invites
from p2p.accept import from_record
from p2p.docref import FEED, PROFILE, DocRef
from tests import hostile
from tests.app_helpers import app_client, ready
from tests.helpers import make_home, share


def test_pages_survive_what_a_hostile_member_can_sign(tmp_path):
    with app_client(tmp_path / "a") as (client, state):
        ready(state)
        cid = str(client.post("/communities/create", data={"name": "Hall"}).url).rsplit("/", 1)[1]
        c = cm.resolve(state.home, cid)
        mallory = make_home(tmp_path / "m", "Mallory")
        mc = invites.join(mallory, invites.write(state.home, c))
        content.post(mallory, mc, "honest news")
        share(mallory, state.home)
        name = "".join(hostile.ESCAPES) + "<img src=x onerror=alert(1)>"
        records = []
        feed_ref = DocRef(c.id, FEED, mallory.public_key)
        records.append(
            hostile.record(
                feed_ref, *map(list, zip(hostile.odd_posts(mallory, feed_ref), strict=True))
            )
        )
        prof = DocRef(c.id, PROFILE, mallory.public_key)
        ch, sig = hostile.change(
            mallory, prof, lambda d, tx: tx.put(ROOT, "name", ScalarType.Str, name)
        )
        records.append(hostile.record(prof, [ch], [sig]))
        state.home.acceptor().accept([from_record(r) for r in records])

        pages = [f"/c/{cid}", f"/c/{cid}/chat", f"/c/{cid}/dm", f"/c/{cid}/manage", "/communities"]
        pages += [f"/c/{cid}?q=honest", f"/c/{cid}/dm?with={mallory.public_key.hex()}", "/wifi"]
        for page in pages:
            r = client.get(page)
            assert r.status_code == 200, (page, r.status_code, r.text[-500:])
            assert "<img src=x" not in r.text and "\x1b" not in r.text.replace("\\x1b", "")
        feed = client.get(f"/c/{cid}").text
        assert "honest news" in feed
        manage = client.get(f"/c/{cid}/manage").text
        assert "&lt;img src=x onerror=alert(1)&gt;" in manage
