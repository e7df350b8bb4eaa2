"""Which HQ downlink versions were applied, and HQ's config sections (``edge.sync.inbox``)."""
from __future__ import annotations


class DownlinkRows:
    """Mixed into ``Store``: uses its ``_guard``, ``_clock`` and ``_outbox_written``."""
