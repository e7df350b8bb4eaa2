"""Firmware bundles, signing and the on-box updater. Built by a later issue."""
