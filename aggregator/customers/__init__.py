"""HQ area: customers, their accounts, and the reference data every edge needs.

HQ holds the minimal customer and account model (ARCHITECTURE.md "Contracts"; the CRM issue
extends it, never forks it) and each branch edge caches its share of it, kept current over the
downlink (kind ``customers``). HQ also owns the 号段 prefix table and the holiday/调休 calendars and
pushes them to every edge (kind ``reference``).

Modules: ``schema`` (tables), ``validate`` (request bodies -> clean values, pure), ``queries``
(customers and accounts in the database), ``model`` (a change and its delta in one
transaction), ``prefixes`` (the 号段 CSV), ``calendar_days``, ``push`` (downlink bodies, parts,
enqueueing), ``projections`` (re-queue what an edge skipped) and ``views``
(``/api/v1/customers``).
"""
