"""HTTP views of the customers area."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("customers", __name__)
