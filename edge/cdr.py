"""Call detail records: one dict per call with exactly the store's ``cdrs`` columns.

``hung_up_by`` is seen from the branch: ``"agent"`` when our side (a desk phone) ended the call,
``"caller"`` when the outside party (the customer) did — also on outbound calls, where the
customer is the callee — and ``"system"`` when the edge or Asterisk ended it (overflow, rejection,
a channel that vanished).
"""
from __future__ import annotations

import json
from typing import Any

from edge.calls import CODE, INBOUND, Call

CDR_FIELDS = (
    "call_id", "direction", "caller", "callee", "trunk", "agent_id", "extension", "group", "rule",
    "region", "flagged", "started_at", "answered_at", "ended_at", "wait_s", "talk_s",
    "hangup_cause", "hangup_cause_txt", "hung_up_by", "disposition", "code", "ivr",
    "rating", "legs", "hold_s",
)
HUNG_UP_BY = ("caller", "agent", "system")
DISPOSITIONS = ("answered", "abandoned", "rejected", "overflow", "no_agent", "failed", "completed",
                "closed", "self_service", "voicemail")


def cdr_record(call: Call, ended_at: float, hung_up_by: str, cause: int,
               cause_txt: str) -> dict[str, Any]:
    answered_at = call.answered_at
    talk_s = 0.0
    if answered_at is not None:
        talk_s = call.reported_talk_s if call.reported_talk_s else ended_at - answered_at
        if call.prior_talk_s and call.reported_talk_s:
            talk_s = call.prior_talk_s + call.reported_talk_s  # agents before a transfer
    wait_end = answered_at if answered_at is not None else ended_at
    record = {
        "call_id": call.call_id,
        "direction": call.direction,
        "caller": call.caller,
        "callee": call.callee,
        "trunk": call.trunk,
        "agent_id": call.agent_id,
        "extension": call.extension,
        "group": call.group,
        "rule": call.rule or call.group_rule,
        "region": str(call.region) if call.region else "",
        "flagged": call.flagged,
        "started_at": call.started_at,
        "answered_at": answered_at,
        "ended_at": ended_at,
        "wait_s": round(max(0.0, wait_end - call.started_at), 3),
        "talk_s": round(max(0.0, float(talk_s)), 3),
        "hangup_cause": int(cause),
        "hangup_cause_txt": cause_txt,
        "hung_up_by": hung_up_by if hung_up_by in HUNG_UP_BY else "system",
        "disposition": call.disposition or _disposition(call, hung_up_by),
        "code": call.code,
        "ivr": call.ivr_trace,
        "rating": call.rating,
        "legs": json.dumps(call.legs, ensure_ascii=False) if call.legs else "",
        "hold_s": round(call.hold_s + (ended_at - call.hold_since if call.hold_since else 0.0), 3),
    }
    return record


def _disposition(call: Call, hung_up_by: str) -> str:
    if call.direction == CODE:
        return "completed"
    if call.answered_at is not None:
        return "answered"
    if call.direction == INBOUND and hung_up_by == "system":
        return "failed"  # the line or the link died: not the caller's choice, not an abandon
    if call.direction == INBOUND or hung_up_by == "agent":
        return "abandoned"
    return "failed"
