"""HQ's side of the resumable recording upload (``aggregator.recordings.views``): chunks only in
place, the whole file verified before it is filed by edge/day/agent, re-uploads idempotent,
edge tokens required. One test runs against real gunicorn with two workers."""
from __future__ import annotations

import concurrent.futures
import hashlib
import io
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from aggregator.auth.access import issue_edge_token, revoke_edge_tokens
from aggregator.db import HqDb
from aggregator.recordings import catalog
from aggregator.recordings.errors import OffsetMismatch
from aggregator.recordings.storage import RecordingFiles, UploadMeta
from tests.aggregator.helpers import db_of, make_app

UPLOADS = "/api/v1/recordings/uploads"
CHUNK = 40_000


def mp3_bytes(size: int = 3 * CHUNK - 1234, seed: int = 1) -> bytes:
    return hashlib.shake_256(f"recording {seed}".encode()).digest(size)


def meta_for(data: bytes, **overrides: Any) -> dict[str, Any]:
    body = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "call_id": "1795392187.42", "leg": 1, "agent": "wang", "day": "2026-11-23",
            "duration_s": 61.5, "started_at": 1_795_392_187.0}
    body.update(overrides)
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def put_chunk(client: Any, token: str, data: bytes, start: int, end: int,
              total: int | None = None, body: bytes | None = None) -> Any:
    sha = hashlib.sha256(data).hexdigest()
    chunk = data[start:end + 1] if body is None else body
    return client.put(f"{UPLOADS}/{sha}", data=chunk, headers={
        **bearer(token), "Content-Range": f"bytes {start}-{end}/{total or len(data)}"})


def upload_in_chunks(client: Any, token: str, data: bytes, **meta: Any) -> list[Any]:
    created = client.post(UPLOADS, json=meta_for(data, **meta), headers=bearer(token))
    assert created.status_code in (200, 201), created.get_json()
    answers = []
    for start in range(0, len(data), CHUNK):
        end = min(start + CHUNK, len(data)) - 1
        answers.append(put_chunk(client, token, data, start, end))
    return answers


@pytest.fixture
def hq(hq_db_url: str, tmp_path: Path) -> SimpleNamespace:
    app, clock = make_app(hq_db_url, tmp_path)
    db = db_of(app)
    with db.transaction() as tx:
        token = issue_edge_token(tx, "edge-a")
        other = issue_edge_token(tx, "edge-b")
    return SimpleNamespace(app=app, db=db, client=app.test_client(), token=token,
                           other=other, root=tmp_path / "recordings", clock=clock)


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_three_chunks_are_filed_by_edge_day_and_agent(hq: SimpleNamespace) -> None:
    data = mp3_bytes()
    sha = hashlib.sha256(data).hexdigest()
    created = hq.client.post(UPLOADS, json=meta_for(data, agent="张伟"), headers=bearer(hq.token))
    assert created.status_code == 201
    assert created.get_json() == {"state": "partial", "sha256": sha, "offset": 0,
                                  "bytes": len(data)}
    head = hq.client.head(f"{UPLOADS}/{sha}", headers=bearer(hq.token))
    assert (head.status_code, head.headers["Upload-Offset"], head.headers["Upload-State"]) == \
        (200, "0", "partial")

    answers = [put_chunk(hq.client, hq.token, data, 0, CHUNK - 1),
               put_chunk(hq.client, hq.token, data, CHUNK, 2 * CHUNK - 1),
               put_chunk(hq.client, hq.token, data, 2 * CHUNK, len(data) - 1)]

    assert [a.status_code for a in answers] == [202, 202, 201]
    assert [a.headers["Upload-Offset"] for a in answers[:2]] == [str(CHUNK), str(2 * CHUNK)]
    confirmed = answers[2].get_json()
    expected_path = "edge-a/2026-11-23/张伟/1795392187.42-1.mp3"
    assert confirmed["state"] == "confirmed" and confirmed["sha256"] == sha
    assert confirmed["path"] == expected_path and confirmed["bytes"] == len(data)
    assert (hq.root / expected_path).read_bytes() == data
    assert files_under(hq.root) == [expected_path]            # the partial is gone
    [row] = catalog.recordings_for_call(hq.db, "edge-a", "1795392187.42")
    assert (row.agent, row.day, row.leg, row.sha256, row.bytes, row.duration_s) == \
        ("张伟", "2026-11-23", 1, sha, len(data), 61.5)
    assert row.uploaded_at == pytest.approx(hq.clock())


def test_a_chunk_out_of_place_is_refused_with_the_offset(hq: SimpleNamespace) -> None:
    data = mp3_bytes()
    hq.client.post(UPLOADS, json=meta_for(data), headers=bearer(hq.token))
    assert put_chunk(hq.client, hq.token, data, 0, CHUNK - 1).status_code == 202

    again = put_chunk(hq.client, hq.token, data, 0, CHUNK - 1)              # a repeat
    skipped = put_chunk(hq.client, hq.token, data, 2 * CHUNK, len(data) - 1)  # a gap
    overlapping = put_chunk(hq.client, hq.token, data, CHUNK - 10, 2 * CHUNK - 1)

    for answer in (again, skipped, overlapping):
        assert answer.status_code == 409
        assert answer.get_json()["offset"] == CHUNK
        assert answer.headers["Upload-Offset"] == str(CHUNK)
    assert put_chunk(hq.client, hq.token, data, CHUNK, 2 * CHUNK - 1).status_code == 202
    assert put_chunk(hq.client, hq.token, data, 2 * CHUNK, len(data) - 1).status_code == 201
    [row] = catalog.recordings_for_call(hq.db, "edge-a", "1795392187.42")
    assert (hq.root / row.path).read_bytes() == data


def test_a_corrupted_byte_is_refused_and_nothing_is_stored(hq: SimpleNamespace) -> None:
    data = mp3_bytes()
    sha = hashlib.sha256(data).hexdigest()
    damaged = bytearray(data)
    damaged[CHUNK + 77] ^= 0x01
    hq.client.post(UPLOADS, json=meta_for(data), headers=bearer(hq.token))
    put_chunk(hq.client, hq.token, data, 0, CHUNK - 1)
    put_chunk(hq.client, hq.token, data, CHUNK, 2 * CHUNK - 1,
              body=bytes(damaged[CHUNK:2 * CHUNK]))

    last = put_chunk(hq.client, hq.token, data, 2 * CHUNK, len(data) - 1)

    assert last.status_code == 422
    assert "sha256" in last.get_json()["error"]
    assert catalog.confirmed(hq.db, "edge-a", sha) is None
    assert hq.db.scalar("SELECT count(*) FROM hq_recordings") == 0
    assert files_under(hq.root) == []
    assert hq.client.head(f"{UPLOADS}/{sha}", headers=bearer(hq.token)).status_code == 404
    # the edge starts over and the good bytes are filed
    answers = upload_in_chunks(hq.client, hq.token, data)
    assert answers[-1].status_code == 201


def test_uploading_a_confirmed_file_again_is_idempotent(hq: SimpleNamespace) -> None:
    data = mp3_bytes()
    sha = hashlib.sha256(data).hexdigest()
    first = upload_in_chunks(hq.client, hq.token, data)[-1].get_json()

    created = hq.client.post(UPLOADS, json=meta_for(data), headers=bearer(hq.token))
    put = put_chunk(hq.client, hq.token, data, 0, CHUNK - 1)
    head = hq.client.head(f"{UPLOADS}/{sha}", headers=bearer(hq.token))

    assert created.status_code == 200 and created.get_json() == first
    assert put.status_code == 200 and put.get_json() == first
    assert (head.status_code, head.headers["Upload-State"], head.headers["Upload-Offset"]) == \
        (200, "confirmed", str(len(data)))
    assert hq.db.scalar("SELECT count(*) FROM hq_recordings") == 1
    assert files_under(hq.root) == [first["path"]]


def test_edge_tokens_are_required_and_uploads_are_per_edge(hq: SimpleNamespace) -> None:
    data = mp3_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert hq.client.post(UPLOADS, json=meta_for(data)).status_code == 401
    assert hq.client.post(UPLOADS, json=meta_for(data),
                          headers=bearer("cce_not-a-token")).status_code == 401
    hq.client.post(UPLOADS, json=meta_for(data), headers=bearer(hq.token))
    assert put_chunk(hq.client, hq.token, data, 0, CHUNK - 1).status_code == 202

    # another edge sees nothing of edge-a's upload and cannot append to it
    assert hq.client.head(f"{UPLOADS}/{sha}", headers=bearer(hq.other)).status_code == 404
    assert put_chunk(hq.client, hq.other, data, CHUNK, 2 * CHUNK - 1).status_code == 404

    with hq.db.transaction() as tx:
        revoke_edge_tokens(tx, "edge-a")
    refused = put_chunk(hq.client, hq.token, data, CHUNK, 2 * CHUNK - 1)
    assert refused.status_code == 401
    assert hq.client.head(f"{UPLOADS}/{sha}", headers=bearer(hq.token)).status_code == 401
    partial = RecordingFiles(hq.root).partial("edge-a", sha)
    assert partial is not None and partial.offset == CHUNK


def test_a_chunk_cut_short_leaves_nothing(hq: SimpleNamespace) -> None:
    data = mp3_bytes()
    sha = hashlib.sha256(data).hexdigest()
    hq.client.post(UPLOADS, json=meta_for(data), headers=bearer(hq.token))
    put_chunk(hq.client, hq.token, data, 0, CHUNK - 1)

    short = hq.client.put(f"{UPLOADS}/{sha}", input_stream=io.BytesIO(data[CHUNK:CHUNK + 500]),
                          headers={**bearer(hq.token), "Content-Length": str(CHUNK),
                                   "Content-Range": f"bytes {CHUNK}-{2 * CHUNK - 1}/{len(data)}"})

    assert short.status_code == 400
    head = hq.client.head(f"{UPLOADS}/{sha}", headers=bearer(hq.token))
    assert head.headers["Upload-Offset"] == str(CHUNK)
    assert [p.name for p in (hq.root / ".partial" / "edge-a").iterdir()] and \
        (hq.root / ".partial" / "edge-a" / f"{sha}.part").stat().st_size == CHUNK


@pytest.mark.parametrize("change, error", [
    ({"call_id": ""}, "call_id"),
    ({"day": "23/11/2026"}, "day"),
    ({"day": "2026-02-30"}, "day"),
    ({"leg": "one"}, "leg"),
    ({"bytes": 0}, "bytes"),
    ({"duration_s": "long"}, "duration_s"),
    ({"sha256": "ABC"}, "sha256"),
])
def test_bad_metadata_is_refused_with_the_key(hq: SimpleNamespace, change: dict[str, Any],
                                              error: str) -> None:
    answer = hq.client.post(UPLOADS, json=meta_for(mp3_bytes(), **change),
                            headers=bearer(hq.token))
    assert answer.status_code == 400
    assert error in answer.get_json()["error"]
    assert files_under(hq.root) == []


def test_bad_ranges_and_unknown_uploads_are_refused(hq: SimpleNamespace) -> None:
    data = mp3_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert put_chunk(hq.client, hq.token, data, 0, CHUNK - 1).status_code == 404   # not created
    hq.client.post(UPLOADS, json=meta_for(data), headers=bearer(hq.token))
    assert put_chunk(hq.client, hq.token, data, 0, CHUNK - 1,
                     total=len(data) + 1).status_code == 400                          # wrong total
    garbled = hq.client.put(f"{UPLOADS}/{sha}", data=b"x",
                            headers={**bearer(hq.token), "Content-Range": "bytes=0-0"})
    assert garbled.status_code == 400 and "Content-Range" in garbled.get_json()["error"]
    mismatch = hq.client.put(f"{UPLOADS}/{sha}", data=b"xy",
                             headers={**bearer(hq.token), "Content-Range": "bytes 0-9/%d"
                                      % len(data)})
    assert mismatch.status_code == 400
    assert hq.client.head(f"{UPLOADS}/{'0' * 64}", headers=bearer(hq.token)).status_code == 404
    assert hq.client.head(f"{UPLOADS}/nothex", headers=bearer(hq.token)).status_code == 400
    assert hq.client.head(f"{UPLOADS}/{sha}", headers=bearer(hq.token)).headers[
        "Upload-Offset"] == "0"


def test_bytes_received_before_a_crash_are_filed_on_the_next_create(hq: SimpleNamespace) -> None:
    """The last chunk was stored, then HQ died before its row committed: nothing is lost and
    nothing is filed twice."""
    data = mp3_bytes()
    sha = hashlib.sha256(data).hexdigest()
    files = RecordingFiles(hq.root)
    files.create("edge-a", sha, UploadMeta.parse(meta_for(data)))

    def crash(_filed: Any) -> None:
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        files.append("edge-a", sha, 0, len(data), io.BytesIO(data), len(data), crash)

    head = hq.client.head(f"{UPLOADS}/{sha}", headers=bearer(hq.token))
    assert (head.headers["Upload-State"], head.headers["Upload-Offset"]) == \
        ("partial", str(len(data)))
    answer = hq.client.post(UPLOADS, json=meta_for(data), headers=bearer(hq.token))
    assert answer.status_code == 201 and answer.get_json()["state"] == "confirmed"
    assert files_under(hq.root) == ["edge-a/2026-11-23/wang/1795392187.42-1.mp3"]
    assert hq.db.scalar("SELECT count(*) FROM hq_recordings") == 1


def test_a_chunk_that_lost_a_race_while_arriving_is_not_appended(tmp_path: Path) -> None:
    """Two requests carry the same chunk; the other one lands while this one is still reading
    its body. The offset is checked again under the lock, so the chunk is not appended twice."""
    data = mp3_bytes()
    sha = hashlib.sha256(data).hexdigest()
    files = RecordingFiles(tmp_path)
    files.create("edge-a", sha, UploadMeta.parse(meta_for(data)))

    class RacedBody(io.BytesIO):
        raced = False

        def read(self, size: int | None = -1) -> bytes:
            if not self.raced:
                self.raced = True
                RecordingFiles(tmp_path).append("edge-a", sha, 0, len(data),
                                                io.BytesIO(data[:CHUNK]), CHUNK, print)
            return super().read(size)

    with pytest.raises(OffsetMismatch) as refused:
        files.append("edge-a", sha, 0, len(data), RacedBody(data[:CHUNK]), CHUNK, print)

    assert refused.value.offset == CHUNK
    partial = files.partial("edge-a", sha)
    assert partial is not None and partial.offset == CHUNK


def test_abandoned_uploads_are_pruned_and_live_ones_kept(tmp_path: Path) -> None:
    old, fresh = mp3_bytes(seed=3), mp3_bytes(seed=4)
    files = RecordingFiles(tmp_path)
    for data in (old, fresh):
        files.create("edge-a", hashlib.sha256(data).hexdigest(), UploadMeta.parse(meta_for(data)))
    stale = time.time() - 20 * 86400
    for path in (tmp_path / ".partial" / "edge-a").glob(f"{hashlib.sha256(old).hexdigest()}.*"):
        os.utime(path, (stale, stale))

    assert files.prune(14 * 86400) == 1

    assert files.partial("edge-a", hashlib.sha256(old).hexdigest()) is None
    assert files.partial("edge-a", hashlib.sha256(fresh).hexdigest()) is not None


def test_two_recordings_of_one_leg_never_overwrite_each_other(hq: SimpleNamespace) -> None:
    first, second = mp3_bytes(seed=1), mp3_bytes(seed=2)
    a = upload_in_chunks(hq.client, hq.token, first)[-1].get_json()
    b = upload_in_chunks(hq.client, hq.token, second)[-1].get_json()
    assert a["path"] != b["path"]
    assert (hq.root / a["path"]).read_bytes() == first
    assert (hq.root / b["path"]).read_bytes() == second


def test_over_real_gunicorn_racing_chunks_are_appended_once(hq_server: Any) -> None:
    """Two workers get the same chunk at once (an edge retrying a slow request): one appends it,
    the other answers 409; the file is filed once."""
    db = HqDb.open(hq_server.db_url)
    with db.transaction() as tx:
        token = issue_edge_token(tx, "edge-a")
    data = mp3_bytes(size=3 * 1024 * 1024 + 17)
    sha = hashlib.sha256(data).hexdigest()
    url = hq_server.url + UPLOADS
    with requests.Session() as http:
        http.headers.update(bearer(token))
        assert http.post(url, json=meta_for(data), timeout=10).status_code == 201
        chunk = 1024 * 1024

        def send(start: int) -> int:
            end = min(start + chunk, len(data)) - 1
            with requests.Session() as own:
                return own.put(f"{url}/{sha}", data=data[start:end + 1], timeout=10, headers={
                    **bearer(token), "Content-Range": f"bytes {start}-{end}/{len(data)}"}
                ).status_code

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            statuses = sorted(pool.map(send, [0, 0, 0, 0]))
        assert statuses.count(202) == 1 and statuses.count(409) == 3
        head = http.head(f"{url}/{sha}", timeout=10)
        assert head.headers["Upload-Offset"] == str(chunk)
        for start in range(chunk, len(data), chunk):
            status = send(start)
        assert status == 201
        again = http.post(url, json=meta_for(data), timeout=10)
        assert again.status_code == 200 and again.json()["state"] == "confirmed"
    [row] = catalog.recordings_for_call(db, "edge-a", "1795392187.42")
    db.close()
    filed = Path(hq_server.settings.recordings_root) / row.path
    assert hashlib.sha256(filed.read_bytes()).hexdigest() == sha
