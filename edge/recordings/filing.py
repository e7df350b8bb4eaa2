"""Where a recording is filed: ``<root>/<YYYY-MM-DD>/<agent_id>/<call_id>[-<leg>].mp3``.

The day is the branch's local day (a call at 23:30 in Shanghai is filed under that day, not under
UTC's), so a supervisor finds a call where the wallboard and the CDR say it was. Every component is
made safe for a file system: no separators, no ``..``, no NUL or control characters; Chinese stays.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

UNASSIGNED = "unassigned"
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")
_MAX_NAME_BYTES = 200  # ext4 and most others allow 255 bytes per name; leave room for ".mp3.part"


@dataclass(frozen=True, kw_only=True)
class RecordingMeta:
    """What the edge knows about the recorded call; ``started_at`` is epoch seconds.

    ``leg`` tells apart several recordings of one call (a transfer records each agent's part).
    """

    call_id: str
    leg: str = ""
    agent_id: str
    agent_name: str
    caller: str
    callee: str
    direction: str
    started_at: float
    duration_s: float
    result: str
    customer: str = ""
    campaign: str = ""


def local_time(epoch: float, tz: str) -> datetime:
    """``epoch`` as an aware datetime in the branch's time zone."""
    return datetime.fromtimestamp(epoch, ZoneInfo(tz))


def mp3_path(root: str | Path, meta: RecordingMeta, tz: str) -> Path:
    """The MP3's final path under ``root`` for the call's local day in ``tz``."""
    day = local_time(meta.started_at, tz).strftime("%Y-%m-%d")
    agent = safe_component(meta.agent_id) if meta.agent_id.strip() else UNASSIGNED
    stem = meta.call_id + (f"-{meta.leg}" if meta.leg else "")
    return Path(root) / day / agent / f"{safe_component(stem)}.mp3"


def safe_component(text: str) -> str:
    """``text`` as one path component: separators and control characters become ``_``."""
    name = _UNSAFE.sub("_", text.strip())
    if name in ("", ".", ".."):
        name = "_" * max(1, len(name))
    encoded = name.encode()
    if len(encoded) > _MAX_NAME_BYTES:
        name = encoded[:_MAX_NAME_BYTES].decode(errors="ignore")
    return name
