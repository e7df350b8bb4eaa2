"""HTTP views of the fleet area."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("fleet", __name__)
