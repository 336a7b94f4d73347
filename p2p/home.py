"""A data directory: its store, its documents and the identity living there.

Everything the CLI does starts by opening a `Home`. The passphrase comes from
a provider the caller supplies (a prompt, an environment variable), asked only
when a secret key is actually needed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import msgpack

from p2p import identity as ident
from p2p.errors import IdentityExists, NoHome, NoIdentity, P2PError
from p2p.identity import Identity, PublicIdentity
from p2p.store import STORE_NAME, Store

if TYPE_CHECKING:
    from p2p.accept import Acceptor
    from p2p.documents import Documents

PassphraseProvider = Callable[[bool], str | None]  # argument: True when creating


def default_path() -> Path:
    env = os.environ.get("P2P_HOME")
    if env:
        return Path(env)
    import platformdirs

    return platformdirs.user_data_path("p2p", appauthor=False)


def exists(path: Path) -> bool:
    """Whether `path` holds a home (its store), as opposed to nothing or an unrelated folder."""
    return (Path(path) / STORE_NAME).is_file()


def no_passphrase(_creating: bool) -> str | None:
    return None


class Home:
    """`create=False` refuses a path that holds no home (`NoHome`) instead of making one."""

    def __init__(
        self,
        path: Path | None = None,
        passphrase: PassphraseProvider = no_passphrase,
        create: bool = True,
    ):
        self.path = Path(path) if path else default_path()
        if not create and not exists(self.path):
            raise NoHome(
                f"no p2p data directory at {self.path}: run 'p2p init' to create one"
                " (or check --home / P2P_HOME)",
                path=str(self.path),
            )
        self.store = Store(self.path / STORE_NAME, create=create)
        self._passphrase = passphrase
        self._identity: Identity | None = None

    @cached_property
    def docs(self) -> Documents:
        """Loaded on first use: commands that only read the store never import Automerge."""
        from p2p import index  # noqa: F401 - keeps the derived indexes in step with every write
        from p2p.documents import Documents

        return Documents(self.store)

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
        """The unlocked identity: from the unlock agent if one runs for this home
        (`p2p unlock`), else by asking the passphrase provider once."""
        if self._identity is None:
            row = self.store.db.execute("SELECT public_key, sealed FROM identity").fetchone()
            if row is None:
                raise NoIdentity()
            public_key, sealed = row
            if not ident.is_sealed(sealed):
                self._identity = ident.unseal(sealed, None)
            else:
                self._identity = self._from_agent(public_key) or self._unlock(sealed)
        return self._identity

    def _from_agent(self, public_key: bytes) -> Identity | None:
        from p2p import agent

        got = agent.fetch(self.path)
        if got is None or got[0] != public_key:
            return None
        try:
            identity = Identity.from_secret_bytes(got[1])
        except P2PError:
            return None
        return identity if identity.public_key == public_key else None

    def _unlock(self, sealed: bytes) -> Identity:
        phrase = self._passphrase(False)
        identity = ident.unseal(sealed, phrase)
        if ident.needs_reseal(sealed) and phrase:
            # sealed with age by an older version: reseal with our work factor
            with self.store.transaction() as db:
                db.execute("UPDATE identity SET sealed = ?", (ident.seal(identity, phrase),))
        return identity

    def unlock_with_passphrase(self) -> Identity:
        """Unlock by passphrase even if an agent runs (for `p2p unlock`)."""
        row = self.store.db.execute("SELECT sealed FROM identity").fetchone()
        if row is None:
            raise NoIdentity()
        self._identity = self._unlock(row[0]) if ident.is_sealed(row[0]) else None
        return self.identity

    def export_identity(self, passphrase: str) -> bytes:
        """A backup: the secrets sealed with age under `passphrase`."""
        return ident.backup(self.identity, passphrase)

    @classmethod
    def restore(
        cls, path: Path, backup: bytes, passphrase: str | None, provider: PassphraseProvider
    ) -> Home:
        """A home holding the identity from `backup`, created only once the backup opened.

        A wrong passphrase or a damaged file leaves `path` exactly as it was.
        """
        if exists(path):
            home = cls(path, provider, create=False)
            try:
                if home.has_identity():
                    raise IdentityExists()
                home.import_identity(backup, passphrase)
            except BaseException:
                home.close()
                raise
            return home
        identity = ident.unseal(backup, passphrase)
        home = cls(path, provider, create=True)
        try:
            home.adopt_identity(identity, passphrase)
        except BaseException:
            home.close()
            raise
        return home

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
        from p2p.accept import Acceptor

        return Acceptor(self.docs, self.joined())
