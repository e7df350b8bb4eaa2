"""HQ area: the downlink — versioned HQ→edge messages and announcements (SVC-1).

``queue`` (the ``downlink`` table: ``enqueue`` hands out versions), ``dispatch`` (the process that
publishes pending messages and re-sends them until the edge acknowledges), ``projections`` (the
edges' ``downlink.ack``, ``command.result`` and ``announcement.read``), ``sections`` (what HQ may
push: config sections and whitelisted commands), ``announcements`` and ``fanout`` (one message per
target edge), ``views`` (``/api/v1/downlink``). The edge's side is ``edge.sync.inbox``.
"""
