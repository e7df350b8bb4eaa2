"""What every area's JSON views share: reading the body, and turning an area's errors into
``{"error": …}`` answers with the right status."""
from __future__ import annotations

import logging
from typing import Any, Mapping

from flask import Blueprint, abort, jsonify, request

log = logging.getLogger(__name__)

BODY_ERROR = "expected a JSON object body (Content-Type: application/json)"


def json_body(optional: bool = False) -> dict[str, Any]:
    """The request's JSON object; anything else is a 400 (a form post cannot reach these views).
    ``optional``: an empty body reads as ``{}``."""
    if optional and not request.get_data():
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, description=BODY_ERROR)
    return body


def answer_errors(bp: Blueprint, statuses: Mapping[type[Exception], int]) -> None:
    """Answer each exception type with its status and its message as ``{"error": …}``; a
    refusal is logged at INFO with the request it refused."""
    for exc_type, status in statuses.items():
        def answer(exc: Exception, status: int = status):  # type: ignore[no-untyped-def]
            log.info("%s: %s %s refused (%s): %s", bp.name, request.method, request.path,
                     status, exc)
            return jsonify({"error": str(exc)}), status

        bp.register_error_handler(exc_type, answer)
