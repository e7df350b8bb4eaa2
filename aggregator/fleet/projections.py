"""The ``health`` projection: each edge's periodic health report updates its ``edges`` row.

Body (``edge.sync.health``)::

    {"version": "0.5.0", "outbox_depth": 12, "trunks": {"total": 8, "up": 7},
     "agents": {"total": 20, "logged_in": 14}, "calls_active": 3, "uptime_s": 86400.0,
     "config_versions": {"agents": 4}}

``last_seen`` is when HQ stored the message: an edge that flushes a backlog of old reports is
online now. The snapshot columns take the report with the newest ``ts`` only, because several
ingest consumers may store an edge's reports out of order. A missing field is stored as NULL (an
older edge may not report it yet); a field of the wrong type makes the report unusable.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

from aggregator.projections import ProjectionError, projection

MAX_VERSION_LENGTH = 64


@dataclass(frozen=True)
class HealthReport:
    version: str | None
    outbox_depth: int | None
    trunks_total: int | None
    trunks_up: int | None
    agents_total: int | None
    agents_logged_in: int | None
    calls_active: int | None
    uptime_s: float | None


def parse_health(body: Mapping[str, Any]) -> HealthReport:
    """The report's figures, or ``ProjectionError`` naming the first unusable field."""
    version = body.get("version")
    if version is not None and (not isinstance(version, str) or len(version) > MAX_VERSION_LENGTH):
        raise ProjectionError(f"health.version: expected a short string, got {version!r:.80}")
    trunks, agents = _object(body, "trunks"), _object(body, "agents")
    uptime = body.get("uptime_s")
    if uptime is not None and (isinstance(uptime, bool) or not isinstance(uptime, (int, float))
                               or not math.isfinite(uptime) or uptime < 0):
        raise ProjectionError(f"health.uptime_s: expected seconds >= 0, got {uptime!r:.80}")
    return HealthReport(
        version=version,
        outbox_depth=_count(body, "outbox_depth"),
        trunks_total=_count(trunks, "total", "trunks."),
        trunks_up=_count(trunks, "up", "trunks."),
        agents_total=_count(agents, "total", "agents."),
        agents_logged_in=_count(agents, "logged_in", "agents."),
        calls_active=_count(body, "calls_active"),
        uptime_s=None if uptime is None else float(uptime),
    )


def _object(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = body.get(key, {})
    if not isinstance(value, dict):
        raise ProjectionError(f"health.{key}: expected an object, got {value!r:.80}")
    return value


def _count(body: Mapping[str, Any], key: str, prefix: str = "") -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**62:
        raise ProjectionError(f"health.{prefix}{key}: expected a count >= 0, got {value!r:.80}")
    return value


@projection("health")
def _on_health(tx: Any, envelope: Any, now: float) -> None:
    if envelope.type != "health":
        return
    row = tx.execute("SELECT reported_at FROM edges WHERE id = ?", (envelope.edge,)).fetchone()
    if row is None:
        raise ProjectionError(f"health from unknown edge {envelope.edge!r} (not enrolled)")
    report = parse_health(envelope.body)
    tx.execute("UPDATE edges SET last_seen = ?, updated_at = ? WHERE id = ? AND"
               " (last_seen IS NULL OR last_seen < ?)", (now, now, envelope.edge, now))
    if row[0] is not None and row[0] > envelope.ts:
        return   # an older report stored after a newer one
    tx.execute(
        "UPDATE edges SET reported_at = ?, version = ?, outbox_depth = ?, trunks_total = ?,"
        " trunks_up = ?, agents_total = ?, agents_logged_in = ?, calls_active = ?, uptime_s = ?,"
        " health = ?, updated_at = ? WHERE id = ?",
        (envelope.ts, report.version, report.outbox_depth, report.trunks_total, report.trunks_up,
         report.agents_total, report.agents_logged_in, report.calls_active, report.uptime_s,
         json.dumps(dict(envelope.body), ensure_ascii=False, sort_keys=True), now, envelope.edge))
