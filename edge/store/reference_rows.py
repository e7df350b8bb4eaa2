"""HQ's reference data: the 号段 prefix table and calendar days."""
from __future__ import annotations


class ReferenceRows:
    """Mixed into ``Store``: uses its ``_guard``, ``_clock`` and ``_outbox_written``."""
