"""The store's one error hierarchy.

Every error the store raises on purpose is a ``StoreError`` (itself an ``EdgeError``), so the
runtime can catch "the database let us down" in one place. A duplicate CDR is not an error (the
write is idempotent) and an unknown key in a record is not one either (it is logged and dropped):
both happen in normal operation, when a call is finished twice or the core gains a field first.
"""
from __future__ import annotations

from edge.errors import EdgeError


class StoreError(EdgeError):
    """Base of every error the store raises on purpose."""


class StoreOpenError(StoreError):
    """The database file cannot be opened or set up (path, permissions, not a database)."""


class SchemaVersionError(StoreError):
    """The database was written by a newer edge: its schema version is unknown to this code.

    Opening it anyway could corrupt data the newer version relies on, so the store refuses and
    the message says which versions are involved.
    """

    def __init__(self, path: str, found: int, known: int) -> None:
        self.path = path
        self.found = found
        self.known = known
        super().__init__(
            f"{path}: database schema version {found} is newer than this edge knows ({known}); "
            "upgrade the edge software, or restore a backup made by this version"
        )


class MigrationError(StoreError):
    """A migration failed; it was rolled back and the database stays at the previous version."""


class InvalidRecord(StoreError):
    """A record cannot be stored at all (no ``call_id``, not a mapping)."""


class InvalidQuery(StoreError):
    """A query asked for something the store does not have (an unknown filter column)."""
