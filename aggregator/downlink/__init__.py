"""HQ area: downlink."""
