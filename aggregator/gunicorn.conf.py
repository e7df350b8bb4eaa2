"""gunicorn settings for the HQ web app: ``gunicorn -c aggregator/gunicorn.conf.py aggregator.wsgi:app``.

Every value can be overridden from the environment (``CC_HQ_BIND``, ``CC_HQ_WORKERS``, …) or
gunicorn's own command line. ``preload_app`` stays off: each worker opens its own database
connection after the fork (a SQLite or psycopg connection must not cross a fork). Migrations
run when the first worker opens the database; the others wait on the lock and find them applied.
Sync workers: the views are short database calls; an upload is a bounded chunk.
"""
import os

bind = os.environ.get("CC_HQ_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("CC_HQ_WORKERS", "2"))
worker_class = "sync"
timeout = int(os.environ.get("CC_HQ_TIMEOUT_S", "60"))
graceful_timeout = 10
keepalive = 5
max_requests = int(os.environ.get("CC_HQ_MAX_REQUESTS", "0"))
max_requests_jitter = 50 if max_requests else 0
preload_app = False
accesslog = os.environ.get("CC_HQ_ACCESS_LOG", "-") or None   # "" turns it off
errorlog = "-"
loglevel = os.environ.get("CC_HQ_LOG_LEVEL", "info")
proc_name = "cc-hq"

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                            "stream": "ext://sys.stderr"}},
    "root": {"level": loglevel.upper(), "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": ({"level": "INFO", "handlers": ["stderr"], "propagate": False}
                            if accesslog else {"level": "CRITICAL", "handlers": [],
                                               "propagate": False}),
    },
}
