"""HQ area: auth."""
