"""The aggregator's web application: a Flask app factory with one blueprint per area."""
from aggregator.web.app import Settings, SettingsError, create_app, get_db, get_settings, now

__all__ = ["Settings", "SettingsError", "create_app", "get_db", "get_settings", "now"]
