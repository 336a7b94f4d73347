"""The vocabulary of things that go wrong, each with the sentence a user reads.

Every error the library raises on purpose is a `P2PError`; the CLI prints its
message on one line and exits non-zero. Messages say what happened and what to
do, never a key or a passphrase.
"""

from __future__ import annotations


class P2PError(Exception):
    """Base class: `str(err)` is one plain line a non-expert can act on.

    Keyword arguments are facts a script may want (a path, a fingerprint); they
    are kept in `fields` and printed next to the message with `--json`.
    """

    default = "something went wrong"

    def __init__(self, message: str | None = None, **fields: object) -> None:
        super().__init__(message or self.default)
        self.fields: dict[str, object] = fields

    @property
    def kind(self) -> str:
        return kind_of(type(self))


def kind_of(cls: type[BaseException]) -> str:
    """A stable machine name for an error class: `BundleTruncated` -> "bundle_truncated"."""
    name = cls.__name__
    if name.endswith("Error") and name != "Error":
        name = name[: -len("Error")]
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


# --- the home and its files ---------------------------------------------------


class HomeError(P2PError):
    default = "the data directory cannot be used"


class NoHome(HomeError):
    default = "no p2p data directory here: run 'p2p init' (or check --home / P2P_HOME)"


class StoreCorrupt(HomeError):
    default = (
        "the data store p2p.db is damaged (not a readable database); nothing was changed."
        " Restore it from a backup, or move it away and restore your identity"
        " with 'p2p identity import'"
    )


class StoreUnwritable(HomeError):
    default = (
        "the data store could not be written: is its disk full or failing? Nothing was changed"
    )


class OutputError(P2PError):
    default = "the output file cannot be written there"


class OutputExists(OutputError):
    default = "the output file already exists: choose another name, or add --force to replace it"


class NotARegularFile(OutputError):
    default = (
        "the output path is a device, a pipe or a folder, not a regular file; nothing was written"
    )


# --- identity -----------------------------------------------------------------


class NoIdentity(P2PError):
    default = "no identity here yet: run 'p2p init' first"


class IdentityExists(P2PError):
    default = "an identity already exists in this home; use another --home to create a second one"


class WrongPassphrase(P2PError):
    default = "wrong passphrase: the private keys could not be unlocked"


class KeyFormatError(P2PError):
    default = "this file is not a p2p identity backup, or it is damaged"


# --- communities, content, authorization -------------------------------------


class UnknownCommunity(P2PError):
    default = "no such community here: check the id with 'p2p community list'"


class AmbiguousId(P2PError):
    default = "that id prefix matches more than one thing: give more characters"


class NotAMember(P2PError):
    default = "you are not a member of this community (no invite or key for it)"


class NotAllowed(P2PError):
    default = "your role in this community does not allow that"


class UnknownPost(P2PError):
    default = "no such post in this community"


class PostDeleted(P2PError):
    default = "that post was deleted; a deleted post cannot be edited"


class UnknownMemberKey(P2PError):
    default = (
        "their encryption key is not known here yet: it arrives with the first thing they"
        " write (a post or their profile); sync with them or wait for a bundle from them"
    )


class UnknownPeer(P2PError):
    default = "no known peer matches that name or fingerprint"


class InvalidInvite(P2PError):
    default = "this file is not a valid p2p invite, or it is damaged"


# --- signed changes -----------------------------------------------------------


class ForgedChange(P2PError):
    default = "a change carries no valid signature from its author"


# --- bundles ------------------------------------------------------------------


class BundleError(P2PError):
    """Anything wrong with a bundle file; nothing from it was imported."""

    default = "this bundle is damaged; nothing was imported"


class NotABundle(BundleError):
    default = "this file is not a p2p bundle"


class BundleTruncated(BundleError):
    default = "this bundle is cut short (an interrupted copy?); nothing was imported"


class BundleCorrupt(BundleError):
    default = "this bundle is damaged or was altered; nothing was imported"


class BundleTooLarge(BundleError):
    default = "this bundle declares a record larger than allowed; refusing to read it"


class UnsupportedVersion(BundleError):
    default = "this bundle was written by a newer version of p2p; please upgrade"


class BadBundleSignature(BundleError):
    default = "the bundle's signature does not match its exporter; it was altered or forged"


class WrongKey(BundleError):
    default = "this bundle is encrypted and none of your keys opens it (not a member / no key)"


class PartMismatch(BundleError):
    default = "these bundle parts do not belong together or one is missing"


class StickFull(P2PError):
    default = "not enough free space on the destination; nothing was written"


class StickReadOnly(P2PError):
    default = (
        "the stick is read-only (is its write-protect switch on?): bundles on it were "
        "imported, but nothing could be written to it"
    )


class WriteVerifyFailed(P2PError):
    default = "the file written to the destination did not read back correctly; it was removed"


# --- LAN ----------------------------------------------------------------------


class LanError(P2PError):
    default = "the LAN sync failed"
    phase = ""  # the protocol phase it happened in (docs/lan-protocol.md), once known


class HandshakeFailed(LanError):
    default = "the peer failed the secure handshake (not a p2p peer, or a forged identity)"


class PeerMisbehaved(LanError):
    default = "the peer sent invalid data; the session was closed and nothing partial was kept"


class PeerDisconnected(PeerMisbehaved):
    """The connection ended early. Before the peer proved a shared community this is
    most often a busy peer that dropped us, and `sync_with` tries again."""

    default = "the peer disconnected before finishing; nothing partial was kept"


class PeerTimeout(LanError):
    default = "the peer stopped responding; the session was closed"


class PeerUnreachable(LanError):
    default = "could not connect to the peer"


class NoSharedCommunity(LanError):
    default = (
        "that peer shares no community with you, so nothing was exchanged (and neither of "
        "you learned who the other is)"
    )


class NoPeerFound(LanError):
    default = (
        "no peer found on this network: is anyone running 'p2p serve'? Networks that block "
        "multicast (guest Wi-Fi, 'AP isolation') hide peers: use 'p2p sync --peer HOST:PORT'"
    )


class SameIdentity(LanError):
    default = "that peer is this very identity (your own 'p2p serve'); nothing to sync"


# --- hostile or damaged data --------------------------------------------------


class DamagedData(P2PError, ValueError):
    """Automerge data (from outside, or stored) that the binding cannot use."""

    default = "a document or change is damaged or malformed; it was set aside"


# --- attachments --------------------------------------------------------------


class AttachmentError(P2PError):
    default = "something is wrong with an attachment; the post's text is unaffected"


class BadAttachment(AttachmentError):
    default = "an attachment's data does not match what its post promises; it was refused"


class AttachmentIncomplete(AttachmentError):
    default = "this attachment has not fully arrived yet; sync again to get the rest"


class AttachmentRefused(AttachmentError):
    default = "this attachment is over the community's limits; the post's text was kept"


class UnknownAttachment(AttachmentError):
    default = "no attachment with that hash here: check it with 'p2p attachments ID POST'"


# --- Automerge data from outside (p2p/amformat.py) -----------------------------


class AutomergeFormatError(P2PError):
    """Received Automerge bytes refused before the binding loads them."""

    default = "a received document or change is not valid Automerge data; it was set aside"


class AutomergeMalformed(AutomergeFormatError):
    default = "a received document or change is damaged (bad Automerge framing); it was set aside"


class AutomergeBomb(AutomergeFormatError):
    default = (
        "a received document or change would expand to far more memory than its size"
        " (a compression bomb); it was refused"
    )


# --- unlock agent (p2p/agent.py) ------------------------------------------------


class AgentError(P2PError):
    default = "the unlock agent is not available; run 'p2p unlock' again"
