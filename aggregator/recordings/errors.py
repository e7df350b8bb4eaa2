"""The recordings area's one error hierarchy; each error knows the HTTP status it answers with,
so the views turn any of them into ``{"error": …}`` without a table of cases."""
from __future__ import annotations

from aggregator import AggregatorError


class RecordingsError(AggregatorError):
    """Base of every error the recordings area raises on purpose."""

    status = 400


class BadUpload(RecordingsError):
    """A request the protocol does not allow: bad checksum text, bad metadata, bad range."""


class UploadNotFound(RecordingsError):
    """No upload of that checksum was created by this edge (or it was discarded)."""

    status = 404


class OffsetMismatch(RecordingsError):
    """A chunk that does not start where the stored bytes end; ``offset`` is where they do."""

    status = 409

    def __init__(self, offset: int, got: int) -> None:
        self.offset = offset
        super().__init__(f"chunk starts at {got}, upload is at {offset}")


class ChecksumMismatch(RecordingsError):
    """The complete file does not hash to the sha256 the edge announced; the bytes are gone."""

    status = 422


class Incomplete(RecordingsError):
    """The client went away before the chunk's last byte; nothing of it was kept."""
