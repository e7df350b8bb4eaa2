"""Announcements from HQ and the agents' read receipts."""
from __future__ import annotations


class AnnouncementRows:
    """Mixed into ``Store``: uses its ``_guard``, ``_clock`` and ``_outbox_written``."""
