"""HQ aggregator: ingests what the branch edges publish over MQTT and keeps it in its database.

First slice: ``aggregator.envelope`` (the edge→HQ message, parsed and validated),
``aggregator.db`` (the HQ database: messages, per-stream high-water marks, gaps, dead letters) and
``aggregator.ingest`` (the MQTT consumer that stores messages idempotently and acknowledges each
stream's committed high-water mark back to its edge). The Flask app comes in later slices.
"""


class AggregatorError(Exception):
    """Base of every error the aggregator package raises on purpose."""
