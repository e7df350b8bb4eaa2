"""The enrollment credentials file: written 0600 and atomically, read back with errors that name
the problem, and HQ answers that are not credentials refused."""
from __future__ import annotations

import json
import os
import stat
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from edge.sync.enroll import Credentials, EnrollError, enroll, load_credentials, write_credentials

CREDS = Credentials(edge_id="edge-sz01", name="深圳01", broker_host="mqtt.hq.example.cn",
                    broker_port=8883, username="edge-sz01", password="s3cret",
                    api_token="cce_abc", hq_url="https://hq.example.cn")


def test_written_file_is_private_and_reads_back(tmp_path):
    path = write_credentials(tmp_path / "etc" / "creds.json", CREDS)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_credentials(path) == CREDS
    assert "深圳01" in path.read_text(encoding="utf-8")
    assert sorted(p.name for p in path.parent.iterdir()) == ["creds.json"]   # no temp file left


def test_an_existing_file_is_replaced_only_when_asked(tmp_path):
    path = write_credentials(tmp_path / "creds.json", CREDS)
    other = Credentials(**{**CREDS.__dict__, "edge_id": "edge-sz02"})
    with pytest.raises(EnrollError, match="already exists"):
        write_credentials(path, other)
    assert load_credentials(path).edge_id == "edge-sz01"
    write_credentials(path, other, overwrite=True)
    assert load_credentials(path).edge_id == "edge-sz02"


@pytest.mark.parametrize("content, problem", [
    (None, "no credentials file; run `edge enroll` first"),
    ("{not json", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"edge_id": "edge-x"}), "missing name, broker_host"),
    (json.dumps({**CREDS.__dict__, "broker_port": "8883"}), "broker_port '8883': not a port"),
    (json.dumps({**CREDS.__dict__, "password": ""}), "password: expected a non-empty string"),
])
def test_unusable_files_name_the_problem(tmp_path, content, problem):
    path = tmp_path / "creds.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(EnrollError) as err:
        load_credentials(path)
    assert problem in str(err.value) and str(path) in str(err.value)


def test_a_file_others_can_read_is_used_with_a_warning(tmp_path, caplog):
    path = write_credentials(tmp_path / "creds.json", CREDS)
    os.chmod(path, 0o644)
    assert load_credentials(path) == CREDS
    assert "readable by others" in caplog.text


class _Answer(BaseHTTPRequestHandler):
    status, body = 201, b"{}"

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def fake_hq():
    """A server that answers whatever the test sets: for answers a real HQ never gives."""
    server = HTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status, body, problem", [
    (201, b'{"edge_id": "edge-x"}', "answered without the credentials"),
    (201, b"<html>proxy</html>", "answered without the credentials"),
    (502, b'{"error": "broker down"}', "could not set up the broker: broker down"),
    (500, b"oops", "HQ answered 500: oops"),
])
def test_odd_answers_are_clear_errors(fake_hq, status, body, problem):
    _Answer.status, _Answer.body = status, body
    with pytest.raises(EnrollError, match=problem):
        enroll(f"http://127.0.0.1:{fake_hq.server_address[1]}/", "cet_x", timeout_s=5)
