"""HTTP views of the recordings area: the edges' resumable upload, and playback for people.

Upload protocol (edge -> HQ, ``Authorization: Bearer <edge api token>``). An upload is keyed by
(edge, sha256): the edge comes from the token, never from the request, so an edge can neither
see nor finish another edge's uploads. Sizes are bytes; ``<sha256>`` is 64 lower-case hex digits.

1. ``HEAD /api/v1/recordings/uploads/<sha256>`` (or ``GET``, which adds a JSON body)
   -> 200 with ``Upload-State: partial|confirmed``, ``Upload-Offset`` (bytes HQ holds: where
   the next chunk starts) and ``Upload-Length``; 404 when no upload of it exists.
2. ``POST /api/v1/recordings/uploads`` with JSON ``{"sha256", "bytes", "call_id", "leg",
   "agent", "day": "YYYY-MM-DD" (the branch's local day), "duration_s", "started_at"}``
   -> 201 (created) or 200 (already there) ``{"state": "partial", "offset": n, "bytes": total}``.
   Creating again replaces the metadata and keeps the bytes. For a file already confirmed, or
   one whose bytes were all received before a crash, it answers ``{"state": "confirmed", …}``.
3. ``PUT /api/v1/recordings/uploads/<sha256>`` with ``Content-Range: bytes a-b/total`` and the
   chunk as the body (``Content-Length`` b-a+1, at most 64 MiB). HQ appends it only when ``a`` is
   exactly its offset and every byte arrived: otherwise 409 ``{"error", "offset"}`` with
   ``Upload-Offset`` (a chunk is never trusted out of place, and a half-received one leaves
   nothing). Answers 202 ``{"state": "partial", "offset"}`` with ``Upload-Offset``; after the last
   byte HQ hashes the whole file: a mismatch is 422 and the partial is discarded (start again
   from step 2); a match files it atomically at
   ``<recordings_root>/<edge>/<day>/<agent>/<call_id>-<leg>.mp3``, inserts its
   ``hq_recordings`` row and answers 201 ``{"state": "confirmed", "sha256", "path", "bytes",
   "id", …}``. A PUT for a confirmed file answers 200 with the same body (idempotent).

Other answers: 400 bad metadata, range or checksum text; 401 a missing, unknown or revoked
token; 404 no such upload (create it); 411 no ``Content-Length``; 413 a chunk over 64 MiB.
An upload untouched for 14 days is dropped (the edge, if it comes back, starts it again).

For people (``qa``, ``supervisor``, ``team_lead``, ``admin``; limited to the edges of the
departments the user sees): ``GET /api/v1/recordings`` (filters ``edge``, ``day``, ``agent``,
``call_id``), ``GET /api/v1/recordings/<id>``, ``GET /api/v1/recordings/<id>/audio`` (the MP3,
with ``Range`` for seeking; a play is audited as ``recording.play``),
``GET /api/v1/recordings/cdrs`` (CDRs with their recordings; filters ``edge``, ``agent_id``,
``since``, ``until``) and ``GET /api/v1/recordings/calls/<edge>/<call_id>``.
"""
from __future__ import annotations

import logging
import re
import time
from typing import Any

from flask import Blueprint, Response, abort, g, jsonify, request, send_file

from aggregator.auth.access import audit, edge_required, login_required
from aggregator.recordings import catalog
from aggregator.recordings.errors import (BadUpload, OffsetMismatch, RecordingsError,
                                          UploadNotFound)
from aggregator.recordings.scope import visible_edges
from aggregator.recordings.storage import (Filed, Partial, RecordingFiles, UploadMeta,
                                           check_sha256)
from aggregator.web.app import get_db, get_settings, now

log = logging.getLogger(__name__)

bp = Blueprint("recordings", __name__, url_prefix="/api/v1/recordings")

VIEWERS = ("qa", "supervisor", "team_lead", "admin")
ABANDONED_S = 14 * 86400.0     # a partial nobody touched this long is dropped (edge replaced)
PRUNE_EVERY_S = 3600.0
_next_prune = 0.0
_CONTENT_RANGE = re.compile(r"bytes (\d{1,15})-(\d{1,15})/(\d{1,15})")


@bp.errorhandler(RecordingsError)
def _refused(exc: RecordingsError) -> tuple[Response, int]:
    log.warning("recordings: %s %s from %s refused (%s): %s", request.method, request.path,
                g.get("edge_id") or request.remote_addr, exc.status, exc)
    body: dict[str, Any] = {"error": str(exc)}
    response = jsonify(body)
    if isinstance(exc, OffsetMismatch):
        body["offset"] = exc.offset
        response = jsonify(body)
        response.headers["Upload-Offset"] = str(exc.offset)
    return response, exc.status


# --- the edges' upload ----------------------------------------------------------------------------

@bp.post("/uploads")
@edge_required
def create_upload() -> tuple[Response, int]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadUpload("expected a JSON object")
    sha256 = check_sha256(body.get("sha256"))
    meta = UploadMeta.parse(body)
    done = catalog.confirmed(get_db(), g.edge_id, sha256)
    if done is not None:
        return _confirmed(done, 200)
    files = _files()
    _prune_abandoned(files)
    partial, new = files.create(g.edge_id, sha256, meta)
    if partial.complete:        # every byte arrived before a crash cut the filing short
        return _confirmed(_record(files.finish(g.edge_id, sha256, _on_filed)), 201)
    log.info("recordings: upload %s from %s %s at %s of %s bytes (call %s leg %s)", sha256[:12],
             g.edge_id, "created" if new else "resumed", partial.offset, meta.bytes,
             meta.call_id, meta.leg)
    return _partial(partial, 201 if new else 200)


@bp.route("/uploads/<sha256>", methods=["GET", "HEAD"])
@edge_required
def upload_state(sha256: str) -> tuple[Response, int]:
    check_sha256(sha256)
    done = catalog.confirmed(get_db(), g.edge_id, sha256)
    if done is not None:
        return _confirmed(done, 200)
    partial = _files().partial(g.edge_id, sha256)
    if partial is None:
        raise UploadNotFound(f"no upload of {sha256} from {g.edge_id}; create it first")
    return _partial(partial, 200)


@bp.put("/uploads/<sha256>")
@edge_required
def put_chunk(sha256: str) -> tuple[Response, int]:
    check_sha256(sha256)
    done = catalog.confirmed(get_db(), g.edge_id, sha256)
    if done is not None:
        return _confirmed(done, 200)
    start, end, total = _content_range()
    length = request.content_length
    if length is None:
        abort(411, description="Content-Length required")
    if length != end - start + 1:
        raise BadUpload(f"Content-Length {length} is not the range's {end - start + 1} bytes")
    try:
        result = _files().append(g.edge_id, sha256, start, total, request.stream, length,
                                 _on_filed)
    except UploadNotFound:
        done = catalog.confirmed(get_db(), g.edge_id, sha256)   # filed by a request racing us
        if done is not None:
            return _confirmed(done, 200)
        raise
    if isinstance(result, Partial):
        return _partial(result, 202)
    return _confirmed(_record(result), 201)


# --- for people -----------------------------------------------------------------------------------

@bp.get("")
@login_required(*VIEWERS)
def list_recordings() -> Response:
    args = request.args
    found = catalog.list_recordings(
        get_db(), edge=args.get("edge") or None, day=args.get("day") or None,
        agent=args.get("agent") or None, call_id=args.get("call_id") or None,
        edges=visible_edges(get_db(), g.user), limit=_int_arg("limit", 100),
        offset=_int_arg("offset", 0))
    return jsonify({"recordings": [r.to_json() for r in found]})


@bp.get("/<int:recording_id>")
@login_required(*VIEWERS)
def show_recording(recording_id: int) -> Response:
    return jsonify(_visible(recording_id).to_json())


@bp.get("/<int:recording_id>/audio")
@login_required(*VIEWERS)
def play_recording(recording_id: int) -> Response:
    found = _visible(recording_id)
    try:
        path = _files().resolve(found.path)
    except UploadNotFound:
        abort(404, description="recording file not found")
    if not path.is_file():
        log.error("recordings: %s (id %s) is in the catalogue but not on disk", found.path,
                  found.id)
        abort(404, description="recording file not found")
    if _starts_playing(request.headers.get("Range", "")):   # seeking is not another play
        audit("recording.play", target=f"{found.edge}/{found.call_id}/{found.leg}",
              detail={"id": found.id, "sha256": found.sha256, "agent": found.agent})
    return send_file(path, mimetype="audio/mpeg", conditional=True,
                     download_name=f"{found.call_id}-{found.leg}.mp3")


@bp.get("/cdrs")
@login_required(*VIEWERS)
def list_cdrs() -> Response:
    args = request.args
    cdrs = catalog.list_cdrs(
        get_db(), edge=args.get("edge") or None, agent_id=args.get("agent_id") or None,
        since=_float_arg("since"), until=_float_arg("until"),
        edges=visible_edges(get_db(), g.user), limit=_int_arg("limit", 100),
        offset=_int_arg("offset", 0))
    return jsonify({"cdrs": cdrs})


@bp.get("/calls/<edge>/<call_id>")
@login_required(*VIEWERS)
def call_recordings(edge: str, call_id: str) -> Response:
    scope = visible_edges(get_db(), g.user)
    if scope is not None and edge not in scope:
        abort(404, description="no such call")
    found = catalog.recordings_for_call(get_db(), edge, call_id)
    return jsonify({"edge": edge, "call_id": call_id, "recordings": [r.to_json() for r in found]})


# --- helpers --------------------------------------------------------------------------------------

def _files() -> RecordingFiles:
    return RecordingFiles(get_settings().recordings_root)


def _prune_abandoned(files: RecordingFiles) -> None:
    """Now and then, on the upload path: a per-process check is enough for a rare clean-up."""
    global _next_prune
    if time.monotonic() < _next_prune:
        return
    _next_prune = time.monotonic() + PRUNE_EVERY_S
    removed = files.prune(ABANDONED_S)
    if removed:
        log.info("recordings: dropped %s uploads untouched for %.0f days", removed,
                 ABANDONED_S / 86400)


def _on_filed(filed: Filed) -> None:
    """Inside the upload's lock: the row commits before the partial is removed."""
    with get_db().transaction() as tx:
        g.recording = catalog.record_filed(tx, filed, now())
    log.info("recordings: %s from %s filed at %s (%s bytes)", filed.sha256[:12], filed.edge,
             filed.path, filed.meta.bytes)


def _record(filed: Filed) -> catalog.Recording:
    recording = g.get("recording") or catalog.confirmed(get_db(), filed.edge, filed.sha256)
    assert recording is not None, "on_filed commits the row before returning"
    return recording


def _confirmed(recording: catalog.Recording, status: int) -> tuple[Response, int]:
    response = jsonify({"state": "confirmed", **recording.to_json()})
    response.headers["Upload-State"] = "confirmed"
    response.headers["Upload-Offset"] = str(recording.bytes)
    response.headers["Upload-Length"] = str(recording.bytes)
    return response, status


def _partial(partial: Partial, status: int) -> tuple[Response, int]:
    response = jsonify({"state": "partial", "sha256": partial.sha256, "offset": partial.offset,
                        "bytes": partial.meta.bytes})
    response.headers["Upload-State"] = "partial"
    response.headers["Upload-Offset"] = str(partial.offset)
    response.headers["Upload-Length"] = str(partial.meta.bytes)
    return response, status


def _content_range() -> tuple[int, int, int]:
    header = request.headers.get("Content-Range", "")
    match = _CONTENT_RANGE.fullmatch(header.strip())
    if match is None:
        raise BadUpload(f"Content-Range: expected 'bytes a-b/total', got {header!r}")
    start, end, total = (int(part) for part in match.groups())
    if end < start or end >= total:
        raise BadUpload(f"Content-Range {header!r} is not a range inside the file")
    return start, end, total


def _visible(recording_id: int) -> catalog.Recording:
    found = catalog.recording(get_db(), recording_id)
    scope = visible_edges(get_db(), g.user)
    if found is None or (scope is not None and found.edge not in scope):
        abort(404, description="no such recording")
    return found


def _starts_playing(range_header: str) -> bool:
    return not range_header or range_header.replace(" ", "").startswith("bytes=0-")


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        abort(400, description=f"{name}: expected an integer, got {raw!r}")


def _float_arg(name: str) -> float | None:
    raw = request.args.get(name)
    if raw in (None, ""):
        return None
    try:
        return float(raw)
    except ValueError:
        abort(400, description=f"{name}: expected epoch seconds, got {raw!r}")
