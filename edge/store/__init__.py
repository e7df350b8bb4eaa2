"""The edge's SQLite store (sqlite-utils, WAL, versioned schema). See ``edge.store.store``.

``from edge.store import Store`` is the whole public surface for the runtime; the error types are
re-exported so callers catch ``StoreError`` without knowing the module layout.
"""
from edge.store.errors import (
    InvalidQuery,
    InvalidRecord,
    MigrationError,
    SchemaVersionError,
    StoreError,
    StoreOpenError,
)
from edge.store.records import CDR_FIELDS
from edge.store.schema import MIGRATIONS
from edge.store.store import SYNCHRONOUS_MODES, Store

__all__ = [
    "CDR_FIELDS",
    "MIGRATIONS",
    "SYNCHRONOUS_MODES",
    "InvalidQuery",
    "InvalidRecord",
    "MigrationError",
    "SchemaVersionError",
    "Store",
    "StoreError",
    "StoreOpenError",
]
