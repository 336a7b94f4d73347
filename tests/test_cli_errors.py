"""Errors are one plain line (exit 2 for usage, 1 otherwise), JSON with --json."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import cli


def one_line(res: subprocess.CompletedProcess, code: int, fragment: str) -> str:
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in res.stderr, res.stderr
    assert fragment in lines[0], lines[0]
    return lines[0]


def as_json(res: subprocess.CompletedProcess, code: int, kind: str) -> dict:
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert res.stderr == "", res.stderr
    doc = json.loads(res.stdout)
    assert doc["kind"] == kind and doc["error"], doc
    return doc


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("err") / "ann"
    assert cli(home, "init", "--no-passphrase", "--name", "Ann").returncode == 0
    made = cli(home, "community", "create", "Town", "--json")
    return home, json.loads(made.stdout)["id"]


USAGE = [
    (["import", "/nonexistent/bundle.p2p"], "does not exist"),
    (["verify"], "Missing argument"),
    (["community", "role", "ID", "M", "admin"], "'admin' is not one of"),
    (["sync", "--peer", "nohost"], "not HOST:PORT"),
    (["sync", "--peer", "127.0.0.1:99999"], "between 1 and 65535"),
    (["serve", "--port", "70000"], "70000"),
    (["feed", "ID", "--no-such-option"], "No such option"),
    (["no-such-command"], "No such command"),
]


@pytest.mark.parametrize(("args", "fragment"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage_errors_are_one_line_exit_2(town, args: list[str], fragment: str) -> None:
    home, _ = town
    one_line(cli(home, *args), 2, fragment)
    doc = as_json(cli(home, *args, "--json"), 2, "usage")
    assert fragment in doc["error"]


def test_library_errors_carry_a_kind_and_fields(town) -> None:
    home, cid = town
    one_line(cli(home, "feed", "ffffffff"), 1, "no joined community matches")
    assert as_json(cli(home, "feed", "ffffffff", "--json"), 1, "unknown_community")
    other = home.parent / "nobody-here"
    doc = as_json(cli(other, "whoami", "--json"), 1, "no_home")
    assert doc["path"] == str(other)


def test_dm_to_a_member_not_known_yet_says_why(town, tmp_path: Path) -> None:
    home, cid = town
    bob = tmp_path / "bob"
    assert cli(bob, "init", "--no-passphrase", "--name", "Bob").returncode == 0
    fp = json.loads(cli(bob, "whoami", "--json").stdout)["fingerprint"]
    line = one_line(cli(home, "dm", "send", cid, fp, "hello"), 1, "is known here yet")
    assert "encryption key" in line and "sync with them first" in line
    doc = as_json(cli(home, "dm", "send", cid, fp, "hello", "--json"), 1, "unknown_member_key")
    assert doc["member"] == fp


@pytest.mark.parametrize("damage", ["header", "pages"])
def test_a_corrupt_store_says_it_is_corrupt(tmp_path: Path, damage: str) -> None:
    home = tmp_path / "h"
    assert cli(home, "init", "--no-passphrase", "--name", "Ann").returncode == 0
    assert cli(home, "community", "create", "Town").returncode == 0
    db = home / "p2p.db"
    data = bytearray(db.read_bytes())
    if damage == "header":
        data[:16] = b"definitely not a"
    else:  # every page after the first two: the schema reads, the tables do not
        for i in range(8192, len(data), 7):
            data[i] = 0x55
    db.write_bytes(bytes(data))
    before = db.read_bytes()
    for sub in (["whoami"], ["community", "list"]):
        res = cli(home, *sub)
        assert res.returncode == 1, res.stderr
        assert "damaged" in res.stderr and "disk full" not in res.stderr, res.stderr
        assert len(res.stderr.splitlines()) == 1 and "Traceback" not in res.stderr
    as_json(cli(home, "community", "list", "--json"), 1, "store_corrupt")
    assert db.read_bytes() == before


def test_no_bad_grammar_in_messages(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert cli(home, "init", "--no-passphrase").returncode == 0
    made = json.loads(cli(home, "community", "create", "Solo", "--json").stdout)
    listed = cli(home, "community", "list")
    assert "1 member)" in listed.stdout and "1 members" not in listed.stdout
    res = cli(home, "community", "invite", made["id"], "--out", str(tmp_path / "i"), "--passphrase")
    assert res.returncode == 1 and "an invite passphrase is needed" in res.stderr, res.stderr


def test_no_plural_by_hand_in_the_cli_sources() -> None:
    """'{n} members' prints "1 members": counts go through context.plural."""
    import re

    root = Path(__file__).resolve().parents[1] / "p2p" / "cli"
    words = "members|documents|posts|changes|signatures|messages|bytes|files|chunks|attachments"
    bad = re.compile(r"\}\s+(" + words + r")\b")
    found = [
        f"{p.name}:{n}: {line.strip()}"
        for p in sorted(root.glob("*.py"))
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if bad.search(line)
    ]
    assert found == []


def test_a_damaged_bundle_is_one_line_or_one_json_object(town, tmp_path: Path) -> None:
    home, _ = town
    cut = tmp_path / "cut.p2p"
    out = tmp_path / "whole.p2p"
    assert cli(home, "export", "--out", str(out)).returncode == 0
    cut.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    for command in ("verify", "import"):
        one_line(cli(home, command, str(cut)), 1, "cut short")
        doc = json.loads(cli(home, command, str(cut), "--json").stdout)
        assert doc["kind"] == "bundle_truncated" and "cut short" in doc["error"], doc
