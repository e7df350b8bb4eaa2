"""Local retention of recordings (``edge.recordings.retention``): only MP3s HQ confirmed are ever
deleted; by age first, then oldest uploaded first while the disk is over its share."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest

from edge.recordings.retention import DAY_S, DiskUsage, apply_retention
from edge.store import Store

T0 = 1_795_392_000.0
SIZE = 10_000
TOTAL = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[SimpleNamespace]:
    clock = Clock()
    store = Store(tmp_path / "edge.sqlite3", clock=clock)
    yield SimpleNamespace(store=store, clock=clock, root=tmp_path / "recordings")
    store.close()


def recorded(edge: SimpleNamespace, name: str, *, at: float, uploaded_at: float | None = None,
             upload_state: str = "confirmed", agent: str = "wang") -> Path:
    """An MP3 recorded at ``at``; confirmed by HQ at ``uploaded_at`` unless told otherwise."""
    path = edge.root / "2026-11-23" / agent / f"{name}-1.mp3"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = hashlib.shake_256(name.encode()).digest(SIZE)
    path.write_bytes(data)
    file = f"{name}-1.wav"
    edge.clock.t = at
    edge.store.recording_stopped(file, name, 1, f"/spool/{file}", {"agent_id": agent})
    edge.store.recording_done(file, {"mp3_path": str(path), "sha256": hashlib.sha256(
        data).hexdigest(), "mp3_bytes": SIZE, "duration_s": 1.0, "decoded_duration_s": 1.0})
    if upload_state == "confirmed":
        edge.clock.t = uploaded_at if uploaded_at is not None else at + 60
        assert edge.store.upload_confirmed(file, f"edge-a/2026-11-23/{agent}/{name}-1.mp3")
    elif upload_state == "failed":
        edge.store.upload_failed(file, "HQ refused it")
    elif upload_state == "pending":
        edge.store.upload_progress(file, SIZE // 2)
    return path


def disk(edge: SimpleNamespace, over_by_files: float) -> object:
    """A disk whose fill follows the MP3s on it: ``over_by_files`` files over 80 % now."""
    on_disk_now = sum(p.stat().st_size for p in edge.root.rglob("*.mp3"))
    base = int(0.8 * TOTAL + over_by_files * SIZE) - on_disk_now

    def usage(path: str) -> DiskUsage:
        assert Path(path) == edge.root
        used = base + sum(p.stat().st_size for p in edge.root.rglob("*.mp3"))
        return DiskUsage(TOTAL, used, TOTAL - used)
    return usage


def test_unconfirmed_recordings_are_never_deleted_even_when_the_disk_is_full(
        edge: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    kept = [recorded(edge, "never-tried", at=T0, upload_state=""),
            recorded(edge, "half-sent", at=T0, upload_state="pending"),
            recorded(edge, "refused", at=T0, upload_state="failed")]
    now = T0 + 365 * DAY_S

    with caplog.at_level(logging.WARNING):
        report = apply_retention(edge.store, edge.root, 30, 0.8, now,
                                 disk_usage=disk(edge, over_by_files=50))

    assert all(path.exists() for path in kept)
    assert report.deleted == 0 and report.over_share
    assert report.unconfirmed_files == 3
    assert "only MP3s HQ has not confirmed are left (3 files" in caplog.text
    assert all(row["local_deleted_at"] is None for row in edge.store.recordings())


def test_confirmed_recordings_older_than_the_retention_go(edge: SimpleNamespace) -> None:
    old = recorded(edge, "old", at=T0)
    young = recorded(edge, "young", at=T0 + 25 * DAY_S)
    unsent_old = recorded(edge, "unsent-old", at=T0, upload_state="")
    now = T0 + 31 * DAY_S

    report = apply_retention(edge.store, edge.root, 30, 0.8, now,
                             disk_usage=disk(edge, over_by_files=-10))

    assert (old.exists(), young.exists(), unsent_old.exists()) == (False, True, True)
    assert (report.expired, report.for_space, report.freed_bytes) == (1, 0, SIZE)
    assert edge.store.recording("old-1.wav")["local_deleted_at"] == now
    assert edge.store.recording("young-1.wav")["local_deleted_at"] is None


def test_under_disk_pressure_the_oldest_uploaded_go_first(edge: SimpleNamespace) -> None:
    # recorded in one order, uploaded in another: the upload order decides
    a = recorded(edge, "a", at=T0, uploaded_at=T0 + 300)
    b = recorded(edge, "b", at=T0 + 10, uploaded_at=T0 + 100)
    c = recorded(edge, "c", at=T0 + 20, uploaded_at=T0 + 200)
    d = recorded(edge, "d", at=T0 + 30, uploaded_at=T0 + 400)
    pending = recorded(edge, "p", at=T0 - 100, upload_state="pending")
    usage = disk(edge, over_by_files=2.5)                 # three files must go

    report = apply_retention(edge.store, edge.root, 30, 0.8, T0 + DAY_S, disk_usage=usage)

    assert [p.exists() for p in (b, c, a, d)] == [False, False, False, True]
    assert pending.exists()
    assert (report.for_space, report.freed_bytes, report.over_share) == (3, 3 * SIZE, False)
    again = apply_retention(edge.store, edge.root, 30, 0.8, T0 + DAY_S, disk_usage=usage)
    assert again.deleted == 0 and d.exists()


def test_age_and_pressure_together_count_the_bytes_already_freed(edge: SimpleNamespace) -> None:
    expired = recorded(edge, "expired", at=T0)
    fresh = [recorded(edge, f"fresh{n}", at=T0 + 40 * DAY_S + n) for n in range(3)]
    usage = disk(edge, over_by_files=2)

    report = apply_retention(edge.store, edge.root, 30, 0.8, T0 + 41 * DAY_S, disk_usage=usage)

    assert not expired.exists()
    assert [p.exists() for p in fresh] == [False, True, True]
    assert (report.expired, report.for_space) == (1, 1)


def test_a_file_already_gone_is_marked_and_one_outside_the_root_is_kept(
        edge: SimpleNamespace, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gone = recorded(edge, "gone", at=T0)
    gone.unlink()
    outside = tmp_path / "elsewhere" / "x-1.mp3"
    outside.parent.mkdir()
    outside.write_bytes(b"not ours")
    recorded(edge, "x", at=T0)
    edge.store.db.execute("UPDATE recordings SET mp3_path = ? WHERE file = 'x-1.wav'",
                          [str(outside)])

    report = apply_retention(edge.store, edge.root, 30, 0.8, T0 + 60 * DAY_S,
                             disk_usage=disk(edge, over_by_files=0))

    assert report.expired == 1
    assert edge.store.recording("gone-1.wav")["local_deleted_at"] is not None
    assert outside.exists()
    assert edge.store.recording("x-1.wav")["local_deleted_at"] is None
    assert "is not under" in caplog.text


def test_emptied_folders_are_removed_but_not_the_root(edge: SimpleNamespace) -> None:
    only = recorded(edge, "only", at=T0, agent="张伟")
    other = recorded(edge, "other", at=T0 + 50 * DAY_S, agent="li")

    apply_retention(edge.store, edge.root, 30, 0.8, T0 + 40 * DAY_S,
                    disk_usage=disk(edge, over_by_files=-5))

    assert not only.parent.exists()                       # 张伟's folder went
    assert other.exists() and edge.root.is_dir()


def test_an_unreadable_disk_usage_deletes_only_by_age(edge: SimpleNamespace,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    young = recorded(edge, "young", at=T0)

    def broken(_path: str) -> DiskUsage:
        raise OSError("stale NFS handle")

    report = apply_retention(edge.store, edge.root, 30, 0.8, T0 + DAY_S, disk_usage=broken)

    assert young.exists() and report.deleted == 0
    assert "stale NFS handle" in caplog.text
