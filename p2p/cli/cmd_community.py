"""`p2p community create|list|show|invite|key|join|role|settings`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from p2p import atomic
from p2p import community as cm
from p2p.blobs.sizes import parse_size
from p2p.cli import safe
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
from p2p.docref import FEED
from p2p.errors import P2PError
from p2p.identity import fingerprint

INVITE_ENV = "P2P_INVITE_PASSPHRASE"


def summary(ctx: Context, c: cm.Community) -> dict:
    home = ctx.home
    settings = cm.settings(home, c)
    posts = home.store.db.execute(
        "SELECT count(*) FROM docs WHERE community = ? AND kind = ?", (c.id, FEED)
    ).fetchone()[0]
    return {
        "id": c.hex,
        "name": settings.get("name", c.name),
        "private": c.private,
        "owner": c.owner.hex(),
        "owner_fingerprint": fingerprint(c.owner),
        "role": cm.role(home, c, home.public_key),
        "members": len(cm.members(home, c)),
        "authors": posts,
    }


@click.group()
def community() -> None:
    """Create, join and manage communities."""


@community.command()
@click.argument("name")
@click.option("--private", is_flag=True, help="Encrypt its bundles; only invited members can read.")
@click.option("--description", default="", help="A short description.")
@json_option
@pass_ctx
def create(ctx: Context, name: str, private: bool, description: str, as_json: bool) -> None:
    """Create a community you own."""
    c = cm.create(ctx.home, name, private, description)
    if as_json:
        emit_json(summary(ctx, c))
        return
    kind = "private" if private else "open"
    say(f"Created {kind} community ", (name, "bold"), f" with id {c.hex}")


@community.command("list")
@json_option
@pass_ctx
def list_(ctx: Context, as_json: bool) -> None:
    """List the communities you are in."""
    rows = [summary(ctx, c) for c in cm.all_communities(ctx.home)]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        console.print("You are in no community yet: 'p2p community create NAME' or 'join FILE'.")
    for r in rows:
        flag = "private" if r["private"] else "open"
        members = plural(r["members"], "member")
        say(f"{r['id'][:12]}  ", (r["name"], "bold"), f"  ({flag}, {r['role']}, {members})")


@community.command()
@click.argument("community_id")
@json_option
@pass_ctx
def show(ctx: Context, community_id: str, as_json: bool) -> None:
    """Show a community's settings, roles and members."""
    home = ctx.home
    c = cm.resolve(home, community_id)
    st = cm.state(home, c)
    info = summary(ctx, c)
    info["description"] = st["settings"].get("description", "")
    info["rules"] = st["settings"].get("rules", "")
    info["member_list"] = [
        {
            "public_key": k.hex(),
            "fingerprint": fingerprint(k),
            "name": cm.display_name(home, c, k),
            "role": cm.role(home, c, k),
        }
        for k in cm.members(home, c)
    ]
    info["hidden_posts"] = sorted(st["hidden"])
    if as_json:
        emit_json(info)
        return
    say((info["name"], "bold"), f"  {info['id']}")
    console.print(
        f"{'private' if c.private else 'open'} community, owner {info['owner_fingerprint']}"
    )
    if info["description"]:
        say(safe.block(info["description"], "  "))
    if info["rules"]:
        say("Rules: ", safe.block(info["rules"], "  "))
    for m in info["member_list"]:
        name = safe.clean(m["name"]) if m["name"] else "(no name)"
        say(f"  {m['fingerprint']}  ", f"{name:20}", f" {safe.clean(m['role'])}")


@community.command()
@click.argument("community_id")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@force_option
@click.option(
    "--passphrase/--no-passphrase",
    default=None,
    help="Seal the invite with a passphrase (default: yes for private communities). "
    "Prompted, or P2P_INVITE_PASSPHRASE.",
)
@json_option
@pass_ctx
def invite(
    ctx: Context,
    community_id: str,
    out: Path,
    force: bool,
    passphrase: bool | None,
    as_json: bool,
) -> None:
    """Write an invite file that lets someone join."""
    atomic.check_destination(out, force)
    c = cm.resolve(ctx.home, community_id)
    seal = c.private if passphrase is None else passphrase
    phrase = ask_passphrase(True, INVITE_ENV, "invite passphrase") if seal else None
    if seal and not phrase:
        raise click.UsageError("an empty invite passphrase is not allowed; use --no-passphrase")
    from p2p import invites  # invites and joins only: it imports acceptance and exchange

    atomic.write_bytes(out, invites.write(ctx.home, c, phrase), force=force)
    if as_json:
        emit_json({"file": str(out), "community": c.hex, "private": c.private, "sealed": seal})
    else:
        say(f"Wrote invite to {out}" + (" (sealed with a passphrase)" if seal else ""))
    if c.private and seal:
        warn(
            "this invite contains the community's secret key, sealed with your passphrase: "
            "tell the passphrase only to the new member, in person."
        )
    elif c.private:
        warn(
            "this invite contains the community's SECRET KEY, NOT sealed: anyone holding "
            "the file can read everything in the community. Hand it over in person and "
            "delete it after use."
        )


@community.command()
@click.argument("community_id")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@force_option
@json_option
@pass_ctx
def key(ctx: Context, community_id: str, out: Path, force: bool, as_json: bool) -> None:
    """Export a private community's age key, so the standard `age -d -i FILE`
    opens its bundles (for interoperability; docs/bundle-format.md, section 3)."""
    atomic.check_destination(out, force)
    c = cm.resolve(ctx.home, community_id)
    if not c.private or not c.secret:
        raise P2PError(
            "this community is open: its bundles are signed, not encrypted, so it has no key"
        )
    atomic.write_bytes(out, (c.secret + "\n").encode(), force=force)
    if as_json:
        emit_json({"file": str(out), "community": c.hex, "recipient": c.recipient})
    else:
        say(f"Wrote the community key to {out} (open a bundle with: age -d -i {out} BUNDLE)")
    warn(
        "this file is the community's SECRET KEY, not sealed: anyone holding it can read "
        "everything in the community, past and future. Keep it on your own device and "
        "delete it when done."
    )


@community.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@pass_ctx
def join(ctx: Context, file: Path, as_json: bool) -> None:
    """Join a community from an invite FILE (asks its passphrase if it is sealed)."""
    from p2p import invites

    with file.open("rb") as fh:
        data = fh.read(invites.MAX_INVITE + 1)
    phrase = None
    if invites.is_sealed(data):
        phrase = ask_passphrase(False, INVITE_ENV, "invite passphrase")
    c = invites.join(ctx.new_home(), data, phrase)
    if as_json:
        emit_json(summary(ctx, c))
        return
    say("Joined ", (cm.settings(ctx.home, c).get("name", c.name), "bold"), f" ({c.hex})")


@community.command()
@click.argument("community_id")
@click.argument("member")
@click.argument("role", type=click.Choice(["moderator", "member"]))
@json_option
@pass_ctx
def role(ctx: Context, community_id: str, member: str, role: str, as_json: bool) -> None:
    """Make MEMBER a moderator or a plain member."""
    c = cm.resolve(ctx.home, community_id)
    key = cm.resolve_member(ctx.home, c, member)
    cm.set_role(ctx.home, c, key, role)
    if as_json:
        emit_json({"member": key.hex(), "fingerprint": fingerprint(key), "role": role})
        return
    console.print(f"{fingerprint(key)} is now {role}")


@community.command("settings")
@click.argument("community_id")
@click.option("--name")
@click.option("--description")
@click.option("--rules")
@click.option("--max-attachment", metavar="SIZE", help="Largest attachment allowed (e.g. 50M).")
@click.option("--max-member-total", metavar="SIZE", help="Attachment total per member (e.g. 1G).")
@json_option
@pass_ctx
def settings_(
    ctx: Context,
    community_id: str,
    name: str | None,
    description: str | None,
    rules: str | None,
    max_attachment: str | None,
    max_member_total: str | None,
    as_json: bool,
) -> None:
    """Change the community's name, description, rules or attachment limits
    (owner and moderators)."""
    from p2p.blobs.attach import LIMIT_LARGEST, LIMIT_MEMBER  # the attachment module

    c = cm.resolve(ctx.home, community_id)
    limits = {
        LIMIT_LARGEST: str(parse_size(max_attachment)) if max_attachment else None,
        LIMIT_MEMBER: str(parse_size(max_member_total)) if max_member_total else None,
    }
    if name is None and description is None and rules is None and not any(limits.values()):
        raise click.UsageError(
            "give at least one of --name, --description, --rules, --max-attachment, "
            "--max-member-total"
        )
    cm.update_settings(ctx.home, c, name=name, description=description, rules=rules, **limits)
    if as_json:
        emit_json({"id": c.hex, **cm.settings(ctx.home, c)})
        return
    console.print("Settings updated")


@community.command()
@click.argument("community_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_ctx
def leave(ctx: Context, community_id: str, yes: bool, as_json: bool) -> None:
    """Remove a community and everything in it from this device."""
    c = cm.resolve(ctx.home, community_id)
    name = cm.settings(ctx.home, c).get("name", c.name)
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("leaving deletes data: add --yes to confirm")
        click.confirm(
            f"Remove {name!r} and everything in it from this device? Others keep their copies",
            abort=True,
        )
    owner = c.owner == ctx.home.public_key
    removed = cm.leave(ctx.home, c)
    if as_json:
        emit_json({"id": c.hex, "name": name, "documents_removed": removed})
        return
    say("Left ", name, f": removed {plural(removed, 'document')} from this device")
    if owner:
        warn(
            "you own this community: your key still does, and a member's invite brings "
            "you back with your role"
        )
