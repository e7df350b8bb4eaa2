"""Asterisk 22 driver: AMI client and FastAGI server, hardened around pyst2's defects."""
