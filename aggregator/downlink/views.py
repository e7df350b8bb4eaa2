"""HTTP views of the downlink area."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("downlink", __name__)
