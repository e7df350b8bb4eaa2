"""The aggregator's web application: a Flask app factory with one blueprint per area."""
from aggregator.web.app import Settings, create_app, get_db, get_settings

__all__ = ["Settings", "create_app", "get_db", "get_settings"]
