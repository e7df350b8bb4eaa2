"""Projections: what a newly stored edge message changes beyond the ``messages`` table.

``HqDb.store_batch`` calls ``apply_projections`` inside the batch's transaction for each envelope
it inserted for the first time, so a projection runs exactly once per message however often the
edge re-sends it, and commits or rolls back with it. Each area registers its handlers by message
``type`` prefix at import (``aggregator.migrations`` imports every area, so they are registered
before the first batch)::

    @projection("downlink.ack")
    def _on_ack(tx, envelope, now): tx.execute("UPDATE downlink SET …", (...))

A handler that raises ``ProjectionError`` turns its message into a dead letter (the message row
stays, so the edge's stream still advances); any other exception rolls the batch back.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

from aggregator import AggregatorError

if TYPE_CHECKING:
    from aggregator.envelope import Envelope

log = logging.getLogger(__name__)

Projection = Callable[[Any, "Envelope", float], None]
_HANDLERS: list[tuple[str, Projection]] = []


class ProjectionError(AggregatorError):
    """A stored message whose body a projection cannot use; it is dead-lettered with this reason."""


def projection(type_prefix: str) -> Callable[[Projection], Projection]:
    """Register ``fn(tx, envelope, now)`` for messages whose ``type`` starts with the prefix."""
    def register(fn: Projection) -> Projection:
        if (type_prefix, fn) not in _HANDLERS:
            _HANDLERS.append((type_prefix, fn))
        return fn
    return register


def handlers_for(message_type: str) -> list[Projection]:
    return [fn for prefix, fn in _HANDLERS if message_type.startswith(prefix)]


def apply_projections(tx: Any, envelope: "Envelope", now: float) -> list[str]:
    """Run every matching handler; returns the reasons of those that refused the message."""
    refused: list[str] = []
    for fn in handlers_for(envelope.type):
        try:
            fn(tx, envelope, now)
        except ProjectionError as exc:
            log.warning("%s seq %s (%s): %s", envelope.topic, envelope.seq, envelope.type, exc)
            refused.append(f"{fn.__module__}.{fn.__name__}: {exc}")
    return refused
