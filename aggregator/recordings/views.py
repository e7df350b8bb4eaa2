"""HTTP views of the recordings area."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("recordings", __name__)
