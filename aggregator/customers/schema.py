"""The customers area's tables (one migration in ``aggregator.migrations``)."""
from __future__ import annotations

from typing import Any


def migrate(tx: Any, d: Any) -> None:
    """Placeholder until the area's tables land."""
