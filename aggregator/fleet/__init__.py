"""HQ area: fleet (ADM-4) — enrolling edges and showing each one's health.

- ``broker_acl``: what each broker user may do, as dynamic-security roles (pure data);
  ``broker_config``: writes the broker's first dynamic-security file.
- ``dynsec``: adds, disables and removes edges on the running broker (its control API).
- ``enrollment_tokens`` / ``enrollment``: one-time tokens and spending one on an edge.
- ``edges``: ids, rows, online/stale/offline; ``projections``: the ``health`` message.
- ``views``: ``/api/v1/fleet``.
"""
