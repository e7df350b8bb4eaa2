"""Repair what an edge skipped: a ``customers`` or ``reference`` message it acked ``duplicate``
because a newer version of its (kind, scope) was applied first.

The edge applies a version only above the one it applied last, which is right for a table sent
whole, but a delta or one part of a table carries only some rows: if the broker lost version 4
and version 5 overtook it, the re-sent 4 is skipped and its rows would stay stale until the next
snapshot. The inbox acks such a skip as ``duplicate`` with an error ("version 4 <= applied 5");
a plain redelivery of the applied version has none. For a message HQ never saw applied, this
projection queues the same rows again as a new version with their *current* state: a delta
becomes a delta of the same customers, a snapshot or prefix part the same key range. A calendar
is always sent whole, so a newer one already holds everything. A redundant repair (the applied
ack of the older version still on its way through another ingest consumer) costs one message.
"""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from aggregator.customers import push
from aggregator.projections import projection

if TYPE_CHECKING:
    from aggregator.envelope import Envelope

log = logging.getLogger(__name__)

REPAIRED = {(push.CUSTOMERS, push.SHARE), (push.REFERENCE, push.PREFIXES)}


@projection("downlink.ack")
def resend_skipped(tx: Any, envelope: "Envelope", now: float) -> None:
    body = envelope.body
    key = (body.get("kind"), body.get("scope"))
    if key not in REPAIRED or body.get("result") != "duplicate" or not body.get("error"):
        return
    row = tx.execute("SELECT state, type, body FROM downlink WHERE id = ? AND edge = ?",
                     (body.get("id"), envelope.edge)).fetchone()
    if row is None or row[0] == "applied":
        return      # not ours to judge (the downlink projection reports it), or not lost
    type_, sent = row[1], json.loads(row[2])
    edge, by = envelope.edge, "repair"
    if type_ == push.DELTA_TYPE:
        ids = [c.get("id") for c in sent.get("upserts", [])] + list(sent.get("deletes", []))
        queued = push.enqueue_current(tx, edge, [i for i in ids if isinstance(i, str)],
                                      created_by=by, now=now)
    elif type_ == push.SNAPSHOT_TYPE:
        queued = push.enqueue_snapshot(tx, edge, after=sent.get("after"),
                                       through=sent.get("through"), created_by=by, now=now)
    else:
        queued = push.enqueue_prefixes(tx, [edge], after=sent.get("after"),
                                       through=sent.get("through"), created_by=by, now=now)
    log.warning("%s skipped %s/%s v%s (%s): queued again as v%s", edge, key[0], key[1],
                body.get("version"), body.get("error"),
                ", ".join(str(m.version) for m in queued))
