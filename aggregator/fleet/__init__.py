"""HQ area: fleet."""
