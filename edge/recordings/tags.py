"""The ID3v2.3 tag that makes a recording findable in any player or file manager.

ID3v2.3 rather than 2.4 because Windows Explorer and many desk players read only 2.3; text is UTF-16
because 2.3 has no UTF-8, and agent and customer names are Chinese. The tag is prepended to the
MP3 stream: an ID3v2 tag at the start is part of the MP3 format, decoders skip it. Every field
is also in a ``TXXX`` frame under its ``RecordingMeta`` name, so a script can read them back
without guessing which standard frame holds what.
"""
from __future__ import annotations

import io

from mutagen.id3 import COMM, ID3, TDRC, TIT2, TPE1, TXXX, Encoding

from edge.recordings.filing import RecordingMeta, local_time

_TEXT = Encoding.UTF16
_LANGUAGE = "chi"


def id3_tag(meta: RecordingMeta, tz: str = "UTC") -> bytes:
    """The tag's bytes, dates in ``tz`` (the branch's zone), with no padding."""
    started = local_time(meta.started_at, tz)
    tag = ID3()
    tag.add(TIT2(encoding=_TEXT, text=title(meta)))
    tag.add(TPE1(encoding=_TEXT, text=meta.agent_name or meta.agent_id))
    tag.add(TDRC(encoding=_TEXT, text=started.strftime("%Y-%m-%dT%H:%M:%S")))
    tag.add(COMM(encoding=_TEXT, lang=_LANGUAGE, desc="call_id", text=meta.call_id))
    for key, value in _fields(meta, started.isoformat()).items():
        tag.add(TXXX(encoding=_TEXT, desc=key, text=value))
    out = io.BytesIO()
    tag.save(out, v2_version=3, padding=lambda _info: 0)
    return out.getvalue()


def title(meta: RecordingMeta) -> str:
    """``inbound 13800138000 → 8001``: who called whom, as a player's list shows it."""
    return f"{meta.direction} {meta.caller} → {meta.callee}"


def _fields(meta: RecordingMeta, started_iso: str) -> dict[str, str]:
    return {
        "call_id": meta.call_id,
        "leg": meta.leg,
        "agent_id": meta.agent_id,
        "caller": meta.caller,
        "callee": meta.callee,
        "customer": meta.customer,
        "campaign": meta.campaign,
        "direction": meta.direction,
        "started_at": started_iso,
        "duration_s": f"{meta.duration_s:.1f}",
        "result": meta.result,
    }
