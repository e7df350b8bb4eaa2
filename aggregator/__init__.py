"""HQ aggregator (Flask behind gunicorn). Built by the sync issue; empty in the foundation."""
