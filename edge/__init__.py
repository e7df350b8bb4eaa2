"""The branch daemon: a deterministic call-control core plus the wiring that feeds it."""
