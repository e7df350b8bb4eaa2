"""Enroll this box with HQ and keep what HQ hands back: ``edge enroll --hq URL --token T --out P``.

HQ answers ``POST /api/v1/fleet/enroll`` with the edge's id, its own broker user and password and
its API bearer token. They go to one JSON file, mode 0600 (written to a temporary file first and
renamed, so a crash never leaves half a file), referred to by ``[sync] credentials`` in edge.toml;
``load_credentials`` reads it back for the config::

    creds = enroll("https://hq.example.cn", "cet_…", version="0.1.0")
    write_credentials("/etc/cc/edge-credentials.json", creds)
    load_credentials("/etc/cc/edge-credentials.json").username   # "edge-shanghai-02"

A token is good for one edge: enrolling again means a new token from HQ, and a new edge id.
"""
from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from edge.errors import EdgeError

log = logging.getLogger(__name__)

ENROLL_PATH = "/api/v1/fleet/enroll"
TIMEOUT_S = 30.0
FILE_MODE = 0o600


class EnrollError(EdgeError):
    """Enrollment failed or the credentials file is unusable; the message says what to do."""


@dataclass(frozen=True)
class Credentials:
    """What HQ issued to this edge at enrollment."""

    edge_id: str
    name: str
    broker_host: str
    broker_port: int
    username: str
    password: str
    api_token: str
    hq_url: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2) + "\n"


def enroll(hq_url: str, token: str, *, name: str | None = None, version: str | None = None,
           timeout_s: float = TIMEOUT_S, verify: bool | str = True) -> Credentials:
    """Spend ``token`` at HQ; raises ``EnrollError`` with HQ's reason, or why HQ was not reached."""
    base = _base_url(hq_url)
    body: dict[str, Any] = {"token": token.strip()}
    if name:
        body["name"] = name
    if version:
        body["version"] = version
    try:
        response = requests.post(base + ENROLL_PATH, json=body, timeout=timeout_s, verify=verify)
    except requests.exceptions.SSLError as exc:
        raise EnrollError(f"HQ at {base}: TLS failed ({exc}); check the URL and the CA") from exc
    except requests.RequestException as exc:
        raise EnrollError(f"HQ unreachable at {base}: {exc.__class__.__name__}: {exc}") from exc
    answer = _json(response)
    if response.status_code != 201:
        reason = answer.get("error") if isinstance(answer, dict) else None
        raise EnrollError(_refusal(response.status_code, reason or response.text[:200]))
    return _credentials(answer, base)


def _base_url(hq_url: str) -> str:
    url = hq_url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise EnrollError(f"--hq {hq_url!r}: expected an http:// or https:// URL")
    return url


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _refusal(status: int, reason: str) -> str:
    if status in (403, 409, 410):
        return f"HQ refused the token: {reason}"
    if status == 502:
        return f"HQ accepted the token but could not set up the broker: {reason}"
    return f"HQ answered {status}: {reason}"


def _credentials(answer: Any, base: str) -> Credentials:
    try:
        broker = answer["broker"]
        return Credentials(edge_id=_text(answer["edge_id"]), name=str(answer.get("name") or ""),
                           broker_host=_text(broker["host"]), broker_port=int(broker["port"]),
                           username=_text(broker["username"]), password=_text(broker["password"]),
                           api_token=_text(answer["api_token"]),
                           hq_url=str(answer.get("hq_url") or base))
    except (KeyError, TypeError, ValueError) as exc:
        raise EnrollError(f"HQ at {base} answered without the credentials ({exc!r}); is it an HQ "
                          "aggregator of the same version?") from None


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r:.40}")
    return value


def write_credentials(path: str | os.PathLike[str], creds: Credentials, *,
                      overwrite: bool = False) -> Path:
    """Write the file with mode 0600, atomically; refuses to replace one unless ``overwrite``."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise EnrollError(f"{target}: already exists (this box is enrolled); move it away or pass "
                          "--force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(creds.to_json())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_credentials(path: str | os.PathLike[str]) -> Credentials:
    """The credentials file ``edge enroll`` wrote; ``EnrollError`` naming the problem otherwise.
    A file others may read is used, with a warning: the password in it is the edge's identity."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
        mode = stat.S_IMODE(source.stat().st_mode)
    except FileNotFoundError:
        raise EnrollError(f"{source}: no credentials file; run `edge enroll` first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EnrollError(f"{source}: cannot read credentials: {exc}") from exc
    if mode & 0o077:
        log.warning("%s: readable by others (mode %o); chmod 600 it", source, mode)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise EnrollError(f"{source}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise EnrollError(f"{source}: expected a JSON object")
    missing = [f for f in Credentials.__dataclass_fields__ if f not in data]
    if missing:
        raise EnrollError(f"{source}: missing {', '.join(missing)}")
    try:
        port = data["broker_port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"broker_port {port!r}: not a port")
        for key in ("edge_id", "broker_host", "username", "password", "api_token", "hq_url"):
            if not isinstance(data[key], str) or not data[key]:
                raise ValueError(f"{key}: expected a non-empty string")
    except ValueError as exc:
        raise EnrollError(f"{source}: {exc}") from None
    return Credentials(**{f: data[f] for f in Credentials.__dataclass_fields__})
