"""A data directory: its store, its documents and the identity living there.

Everything the CLI does starts by opening a `Home`. The passphrase comes from
a provider the caller supplies (a prompt, an environment variable), asked only
when a secret key is actually needed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import platformdirs

from p2p import identity as ident
from p2p import index as _index  # noqa: F401 - keeps the derived indexes in step with writes
from p2p.accept import Acceptor
from p2p.documents import Documents
from p2p.errors import IdentityExists, NoIdentity
from p2p.identity import Identity, PublicIdentity
from p2p.store import Store

PassphraseProvider = Callable[[bool], str | None]  # argument: True when creating


def default_path() -> Path:
    env = os.environ.get("P2P_HOME")
    if env:
        return Path(env)
    return platformdirs.user_data_path("p2p", appauthor=False)


def no_passphrase(_creating: bool) -> str | None:
    return None


class Home:
    def __init__(self, path: Path | None = None, passphrase: PassphraseProvider = no_passphrase):
        self.path = Path(path) if path else default_path()
        self.store = Store(self.path / "p2p.db")
        self.docs = Documents(self.store)
        self._passphrase = passphrase
        self._identity: Identity | None = None

    def close(self) -> None:
        self.store.close()

    # --- identity ------------------------------------------------------------

    def has_identity(self) -> bool:
        return self.store.db.execute("SELECT 1 FROM identity").fetchone() is not None

    def public_identity(self) -> PublicIdentity:
        row = self.store.db.execute("SELECT public_key, age_recipient FROM identity").fetchone()
        if row is None:
            raise NoIdentity()
        return PublicIdentity(row[0], row[1])

    @property
    def public_key(self) -> bytes:
        return self.public_identity().public_key

    def is_protected(self) -> bool:
        row = self.store.db.execute("SELECT sealed FROM identity").fetchone()
        if row is None:
            raise NoIdentity()
        return ident.is_sealed(row[0])

    def create_identity(self, passphrase: str | None) -> Identity:
        return self.adopt_identity(Identity.generate(), passphrase)

    def adopt_identity(self, identity: Identity, passphrase: str | None) -> Identity:
        if self.has_identity():
            raise IdentityExists()
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO identity (id, public_key, age_recipient, sealed, created)"
                " VALUES (1, ?, ?, ?, ?)",
                (
                    identity.public_key,
                    identity.age_recipient,
                    ident.seal(identity, passphrase),
                    int(time.time()),
                ),
            )
        self._identity = identity
        return identity

    @property
    def identity(self) -> Identity:
        """The unlocked identity; asks the passphrase provider once if needed."""
        if self._identity is None:
            row = self.store.db.execute("SELECT sealed FROM identity").fetchone()
            if row is None:
                raise NoIdentity()
            phrase = self._passphrase(False) if ident.is_sealed(row[0]) else None
            self._identity = ident.unseal(row[0], phrase)
        return self._identity

    def export_identity(self, passphrase: str) -> bytes:
        """A backup: the secrets sealed with age under `passphrase`."""
        return ident.seal(self.identity, passphrase)

    def import_identity(self, backup: bytes, passphrase: str | None) -> Identity:
        """Restore a backup; it is kept sealed under the same passphrase."""
        identity = ident.unseal(backup, passphrase)
        return self.adopt_identity(identity, passphrase)

    # --- settings kept outside documents -------------------------------------

    def meta(self, key: str) -> object | None:
        row = self.store.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return msgpack.unpackb(row[0]) if row else None

    def set_meta(self, key: str, value: object) -> None:
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (key, msgpack.packb(value)),
            )

    # --- acceptance ----------------------------------------------------------

    def joined(self) -> dict[bytes, bytes]:
        """Joined community ids mapped to their owners' keys."""
        return dict(self.store.db.execute("SELECT id, owner FROM communities"))

    def acceptor(self) -> Acceptor:
        return Acceptor(self.docs, self.joined())
