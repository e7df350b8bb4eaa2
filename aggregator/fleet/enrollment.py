"""Enrolling an edge: spend a one-time token, make the edge's id, broker user and API token.

Three short steps, so no database transaction is held open while the broker is asked (on SQLite
that would stall the ingest's writes for as long as the broker takes):

1. one transaction spends the token and creates the ``edges`` row in state ``enrolling``;
2. the broker gets the edge's client and role through the dynamic-security plugin;
3. one transaction issues the edge's API token, makes the row ``active`` and audits it.

If step 2 fails, the row is deleted and the token given back, so the technician can simply try
again; if step 3 fails, the broker client is taken back (best effort). A crash between the steps
leaves a row in ``enrolling`` and a spent token: the admin issues a new token.
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from aggregator.auth.access import audit, issue_edge_token
from aggregator.auth.audit_log import Actor
from aggregator.fleet import edges, enrollment_tokens
from aggregator.fleet.errors import BrokerControlError, FleetError, InvalidInput

log = logging.getLogger(__name__)

MAX_VERSION_LENGTH = 64


class BrokerAdmin(Protocol):
    """What enrollment needs from the broker (``aggregator.fleet.dynsec.DynsecClient``)."""

    def add_edge(self, edge_id: str, password: str) -> None: ...

    def remove_edge(self, edge_id: str) -> None: ...


@dataclass(frozen=True)
class Enrollment:
    edge_id: str
    name: str
    department_id: int | None
    broker_password: str
    api_token: str


def enroll(db: Any, broker: BrokerAdmin, *, token: Any, name: Any = None, version: Any = None,
           now: float) -> Enrollment:
    """Enroll one edge with ``token``; raises a ``FleetError`` saying what to do otherwise."""
    requested = "" if name is None else enrollment_tokens.check_name(name)
    if version is not None and (not isinstance(version, str) or len(version) > MAX_VERSION_LENGTH):
        raise InvalidInput(f"version: a string of at most {MAX_VERSION_LENGTH} characters")
    try:
        with db.transaction() as tx:
            found = enrollment_tokens.find(tx, token)
            enrollment_tokens.check_usable(found, now)
            display = found.edge_name or requested
            edge_id = edges.insert_new(tx, display, found.department_id, now)
            enrollment_tokens.spend(tx, found, edge_id, now)
    except FleetError as exc:
        audit("fleet.enroll_refused", target=requested, detail={"reason": str(exc)},
              actor=Actor("edge", "", requested or "?"))
        raise
    password = secrets.token_urlsafe(24)
    try:
        broker.add_edge(edge_id, password)
    except BrokerControlError as exc:
        log.error("enrollment of %s: broker refused: %s", edge_id, exc)
        with db.transaction() as tx:
            edges.delete_enrolling(tx, edge_id)
            enrollment_tokens.give_back(tx, found.id, edge_id)
            audit("fleet.enroll_failed", target=edge_id, detail={"reason": str(exc)}, tx=tx,
                  actor=Actor("edge", edge_id, display or edge_id))
        raise BrokerControlError(f"HQ could not add the edge to the broker ({exc}); the token is "
                                 "still valid, try again later") from exc
    try:
        with db.transaction() as tx:
            api_token = issue_edge_token(tx, edge_id, revoke_others=True)
            tx.execute("UPDATE edges SET state = 'active', version = ?, updated_at = ?"
                       " WHERE id = ?", (version, now, edge_id))
            audit("fleet.enroll", target=edge_id, tx=tx, actor=Actor("edge", edge_id, edge_id),
                  detail={"name": display or edge_id, "department_id": found.department_id,
                          "token_id": found.id, "version": version})
    except BaseException:
        _take_back(broker, edge_id)
        raise
    log.info("edge %s (%s) enrolled", edge_id, display or edge_id)
    return Enrollment(edge_id, display or edge_id, found.department_id, password, api_token)


def _take_back(broker: BrokerAdmin, edge_id: str) -> None:
    try:
        broker.remove_edge(edge_id)
    except BrokerControlError as exc:
        log.error("edge %s: enrollment failed and its broker client could not be removed: %s "
                  "(remove it with mosquitto_ctrl dynsec deleteClient)", edge_id, exc)
