"""HQ area: customers."""
