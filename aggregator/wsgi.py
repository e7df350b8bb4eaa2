"""gunicorn's entry point: ``gunicorn -c aggregator/gunicorn.conf.py aggregator.wsgi:app``.

Settings come from ``CC_HQ_*`` (``aggregator.web.app.Settings.from_env``); ``CC_HQ_SECRET_KEY``
is required, because every worker must sign session cookies with the same key. Logging is set
up by the gunicorn config (``logconfig_dict``), so the app's warnings land in gunicorn's error log.
"""
from __future__ import annotations

from aggregator.web.app import create_app

app = create_app()
