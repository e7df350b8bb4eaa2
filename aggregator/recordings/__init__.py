"""HQ area: recordings."""
