"""The aggregator's schema, in order: one migration per area, appended, never edited once shipped.

Importing this module also imports each area's projections (``aggregator.projections``).
"""
from __future__ import annotations

from aggregator.auth.schema import migrate as v2_auth
from aggregator.customers.schema import migrate as v6_customers
from aggregator.db import Migration, v1_ingest
from aggregator.downlink.schema import migrate as v4_downlink
from aggregator.fleet.schema import migrate as v3_fleet
from aggregator.recordings.schema import migrate as v5_recordings

MIGRATIONS: tuple[Migration, ...] = (v1_ingest, v2_auth, v3_fleet, v4_downlink, v5_recordings,
                                     v6_customers)
