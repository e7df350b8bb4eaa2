"""Local retention of recordings: the edge deletes an MP3 only once HQ has confirmed its checksum.

``apply_retention`` (the uploader calls it periodically) deletes, among the MP3s HQ confirmed:

1. every one older than ``retention_days`` (by when it was recorded: local supervisors replay
   recent calls from the box, and a box that was offline for a month keeps nothing longer than
   one that was not);
2. then, while the recordings disk is fuller than ``max_disk_share``, the oldest *uploaded* first
   until enough bytes are freed (computed from one ``disk_usage`` reading, taken after step 1,
   and the files' sizes, so a file system that frees space lazily cannot make one pass delete
   everything).

An MP3 HQ has not confirmed is never deleted, whatever the disk says: when only those are left
and the disk is still over its share, a warning says so (the uploader is behind, or HQ refuses
them). Files outside ``root`` are never touched. The row keeps its facts and gets
``local_deleted_at``; emptied day/agent folders are removed.

Example::

    report = apply_retention(store, "/var/lib/cc/recordings", retention_days=30,
                             max_disk_share=0.8, now=time.time())
    report.deleted, report.freed_bytes
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

from edge.store import Store

log = logging.getLogger(__name__)

DAY_S = 86400.0


class DiskUsage(NamedTuple):
    total: int
    used: int
    free: int


DiskUsageFn = Callable[[str], Any]   # shutil.disk_usage's shape: .total, .used


@dataclass(frozen=True)
class RetentionPolicy:
    """What ``[upload]`` says about keeping local copies; the uploader applies it."""

    root: str
    retention_days: float
    max_disk_share: float
    disk_usage: DiskUsageFn = shutil.disk_usage

    def apply(self, store: Store, now: float) -> "RetentionReport":
        return apply_retention(store, self.root, self.retention_days, self.max_disk_share, now,
                               disk_usage=self.disk_usage)


@dataclass
class RetentionReport:
    expired: int = 0            # deleted for their age
    for_space: int = 0          # deleted because the disk was over its share
    freed_bytes: int = 0
    over_share: bool = False    # the disk is still over its share after this pass
    unconfirmed_files: int = 0  # MP3s on disk HQ has not confirmed (never deleted)

    @property
    def deleted(self) -> int:
        return self.expired + self.for_space


def apply_retention(store: Store, root: str | os.PathLike[str], retention_days: float,
                    max_disk_share: float, now: float, *,
                    disk_usage: DiskUsageFn = shutil.disk_usage) -> RetentionReport:
    """Delete confirmed MP3s by age, then by disk pressure (see the module docstring)."""
    root = Path(root)
    report = RetentionReport()
    remaining = []
    for row in store.uploaded_on_disk():
        if float(row["created_at"]) < now - retention_days * DAY_S:
            if _delete(store, root, row, now, report):
                report.expired += 1
        else:
            remaining.append(row)
    excess = _excess_bytes(root, max_disk_share, disk_usage)   # read after the age pass
    for row in remaining:
        if excess <= 0:
            break
        before = report.freed_bytes
        if _delete(store, root, row, now, report):
            report.for_space += 1
            excess -= report.freed_bytes - before
    report.over_share = excess > 0
    report.unconfirmed_files, unconfirmed_bytes = store.unconfirmed_on_disk()
    if report.over_share:
        log.warning("recordings: %s is fuller than %.0f%% and only MP3s HQ has not confirmed are "
                    "left (%s files, %s bytes): they are kept until uploaded", root,
                    max_disk_share * 100, report.unconfirmed_files, unconfirmed_bytes)
    if report.deleted:
        log.info("recordings: deleted %s uploaded MP3s (%s for age, %s for space), %s bytes",
                 report.deleted, report.expired, report.for_space, report.freed_bytes)
    return report


def _excess_bytes(root: Path, max_disk_share: float, disk_usage: DiskUsageFn) -> int:
    """Bytes to free to bring the disk down to its share; 0 when it is under, or unknown."""
    try:
        usage = disk_usage(str(root))
    except OSError as exc:
        log.error("recordings: cannot read the disk usage of %s: %s", root, exc)
        return 0
    return max(0, int(usage.used - max_disk_share * usage.total))


def _delete(store: Store, root: Path, row: dict[str, Any], now: float,
            report: RetentionReport) -> bool:
    """Unlink one confirmed MP3, then mark its row (a crash in between only repeats the
    unlink); True when it is gone."""
    if row.get("upload_state") != "confirmed":      # the query says so; never trust it blindly
        return False
    path = Path(str(row.get("mp3_path") or ""))
    if not _inside(root, path):
        log.error("recordings: %s is not under %s; not deleting it", path, root)
        return False
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        size = 0
    except OSError as exc:
        log.error("recordings: cannot delete uploaded %s: %s", path, exc)
        return False
    if not store.recording_deleted_locally(row["file"], now):
        return False
    report.freed_bytes += size
    _remove_empty_dirs(root, path.parent)
    return True


def _inside(root: Path, path: Path) -> bool:
    try:
        return path.is_absolute() and Path(os.path.realpath(root)) in \
            Path(os.path.realpath(path)).parents
    except OSError:
        return False


def _remove_empty_dirs(root: Path, folder: Path) -> None:
    """The agent folder, then the day folder, if emptied; never ``root`` itself."""
    top = Path(os.path.realpath(root))
    current = Path(os.path.realpath(folder))
    while current != top and top in current.parents:
        try:
            current.rmdir()
        except OSError:   # not empty (or already gone): stop climbing
            return
        current = current.parent
