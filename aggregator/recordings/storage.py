"""Recording files at HQ: partial uploads and filed MP3s on disk. No HTTP, no database.

Layout under ``recordings_root``::

    .partial/<edge>/<sha256>.json    the create step's metadata: the upload exists while it does
    .partial/<edge>/<sha256>.part    the bytes received so far; its size is the upload's offset
    <edge>/<YYYY-MM-DD>/<agent>/<call_id>-<leg>.mp3    filed after the whole file hashed right

Why it is built this way:

* The offset is the size of the ``.part`` file, never a number kept beside it, so the two cannot
  disagree after a crash.
* A chunk is read from the network into a spool file first and appended under an exclusive
  ``flock`` only when it arrived whole and starts exactly at the offset: a client that vanishes
  mid-chunk leaves nothing, and no lock is held while waiting on a slow or dead connection.
* After the last byte the whole file is hashed; a mismatch discards the partial (the edge starts
  over), a match hard-links it into place (atomic, never overwrites) and only then, after the
  caller's ``on_filed`` committed the database row, removes the partial. A crash between the
  steps leaves either a partial to finish or a filed file the next attempt recognises by content.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import re
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping

from aggregator.recordings.errors import (BadUpload, ChecksumMismatch, Incomplete,
                                          OffsetMismatch, UploadNotFound)

PARTIAL_DIR = ".partial"
UNASSIGNED = "unassigned"
MAX_FILE_BYTES = 4 * 1024**3        # a 10-hour call at 64 kbit/s is ~300 MB
MAX_NAME_LENGTH = 128
COPY_BYTES = 256 * 1024
SPOOL_IN_MEMORY = 8 * 1024 * 1024   # chunks up to this size never touch the disk twice
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")

OnFiled = Callable[["Filed"], None]


def check_sha256(text: str) -> str:
    if not isinstance(text, str) or not _SHA256.fullmatch(text):
        raise BadUpload(f"sha256: expected 64 lower-case hex digits, got {text!r}")
    return text


def safe_component(text: str) -> str:
    """``text`` as one path component: no separators, control characters or leading dot;
    Chinese stays."""
    name = _UNSAFE.sub("_", text.strip())
    if name.startswith("."):
        name = "_" + name[1:]
    return name or "_"


@dataclass(frozen=True)
class UploadMeta:
    """What the edge tells HQ about a recording before its bytes: where it is filed and linked."""

    call_id: str
    leg: int
    agent: str
    day: str            # the branch's local day of the call, YYYY-MM-DD
    bytes: int
    duration_s: float
    started_at: float | None = None

    @classmethod
    def parse(cls, body: Any) -> "UploadMeta":
        """The create step's JSON, checked; raises ``BadUpload`` naming the bad key."""
        if not isinstance(body, Mapping):
            raise BadUpload("expected a JSON object")
        return cls(call_id=_text(body, "call_id", required=True), leg=_integer(body, "leg", 0),
                   agent=_text(body, "agent"), day=_day(body.get("day")),
                   bytes=_integer(body, "bytes", 1, MAX_FILE_BYTES),
                   duration_s=_number(body, "duration_s", required=True),
                   started_at=_number(body, "started_at"))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Partial:
    sha256: str
    offset: int
    meta: UploadMeta

    @property
    def complete(self) -> bool:
        return self.offset == self.meta.bytes


@dataclass(frozen=True)
class Filed:
    """A verified recording in its place; ``path`` is relative to the root, POSIX style."""

    edge: str
    sha256: str
    path: str
    meta: UploadMeta


class RecordingFiles:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # --- uploads ------------------------------------------------------------------------------

    def partial(self, edge: str, sha256: str) -> Partial | None:
        """The upload's state, or None when no upload of it exists."""
        part = self._part(edge, sha256)
        try:
            meta = self._read_meta(edge, sha256)
        except UploadNotFound:
            return None
        try:
            with self._locked(part, fcntl.LOCK_SH) as fd:
                return Partial(sha256, os.fstat(fd).st_size, meta)
        except UploadNotFound:
            return Partial(sha256, 0, meta)

    def create(self, edge: str, sha256: str, meta: UploadMeta) -> tuple[Partial, bool]:
        """Start an upload, or return the one in progress (its metadata replaced: the latest
        create wins). The bool is True when the upload is new."""
        part = self._part(edge, sha256)
        part.parent.mkdir(parents=True, exist_ok=True)
        with self._locked(part, fcntl.LOCK_EX, create=True) as fd:
            new = not self._sidecar(edge, sha256).exists()
            offset = os.fstat(fd).st_size
            if offset > meta.bytes:
                raise BadUpload(f"bytes: {meta.bytes} is less than the {offset} already received")
            _write_atomically(self._sidecar(edge, sha256), json.dumps(
                meta.to_json(), ensure_ascii=False).encode())
            return Partial(sha256, offset, meta), new

    def append(self, edge: str, sha256: str, start: int, total: int, body: BinaryIO,
               length: int, on_filed: OnFiled) -> Partial | Filed:
        """Append one chunk ``[start, start + length)``; after the last byte, verify and file.

        Raises ``OffsetMismatch`` (before reading the body, when it can tell), ``Incomplete``
        when the client sent fewer bytes than announced, ``ChecksumMismatch`` after the last
        chunk of a corrupt file (the partial is discarded)."""
        meta = self._read_meta(edge, sha256)
        if total != meta.bytes:
            raise BadUpload(f"Content-Range total {total} is not the upload's {meta.bytes} bytes")
        if length < 1 or start + length > total:
            raise BadUpload(f"chunk of {length} bytes at {start} does not fit in {total}")
        current = self._size(edge, sha256)
        if start != current:
            raise OffsetMismatch(current, start)
        with _spooled(self._part(edge, sha256).parent) as spool:
            _receive(body, length, spool)
            with self._locked(self._part(edge, sha256), fcntl.LOCK_EX) as fd:
                current = os.fstat(fd).st_size
                if start != current:
                    raise OffsetMismatch(current, start)
                spool.seek(0)
                _append(fd, spool, start)
                if start + length < total:
                    return Partial(sha256, start + length, meta)
                return self._finish(edge, sha256, fd, meta, on_filed)

    def finish(self, edge: str, sha256: str, on_filed: OnFiled) -> Filed:
        """File an upload whose bytes are all there but that was not filed (a crash after its
        last chunk). Raises ``OffsetMismatch`` when bytes are still missing."""
        meta = self._read_meta(edge, sha256)
        with self._locked(self._part(edge, sha256), fcntl.LOCK_EX) as fd:
            size = os.fstat(fd).st_size
            if size != meta.bytes:
                raise OffsetMismatch(size, meta.bytes)
            return self._finish(edge, sha256, fd, meta, on_filed)

    def prune(self, max_age_s: float, now: float | None = None) -> int:
        """Remove uploads nobody touched for ``max_age_s`` (an edge that was replaced); the
        edge starts over if it comes back. Returns how many went."""
        now = time.time() if now is None else now
        removed = 0
        for sidecar in (self.root / PARTIAL_DIR).glob("*/*.json"):
            part = sidecar.with_suffix(".part")
            touched = max(_mtime(sidecar), _mtime(part))
            if now - touched > max_age_s:
                for path in (part, sidecar):
                    path.unlink(missing_ok=True)
                removed += 1
        return removed

    # --- filed recordings ---------------------------------------------------------------------

    def resolve(self, relative: str) -> Path:
        """The absolute path of a filed recording; refuses anything outside the root."""
        root = self.root.resolve()
        path = (root / relative).resolve()
        if root not in path.parents:
            raise UploadNotFound(f"{relative!r} is not a recording path")
        return path

    # --- internals ----------------------------------------------------------------------------

    def _dir(self, edge: str) -> Path:
        return self.root / PARTIAL_DIR / safe_component(edge)

    def _part(self, edge: str, sha256: str) -> Path:
        return self._dir(edge) / f"{check_sha256(sha256)}.part"

    def _sidecar(self, edge: str, sha256: str) -> Path:
        return self._dir(edge) / f"{check_sha256(sha256)}.json"

    def _read_meta(self, edge: str, sha256: str) -> UploadMeta:
        try:
            text = self._sidecar(edge, sha256).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UploadNotFound(f"no upload of {sha256} from {edge}") from None
        try:
            return UploadMeta(**json.loads(text))
        except (ValueError, TypeError) as exc:   # written by us; unreadable means damaged
            self._discard(edge, sha256)
            raise UploadNotFound(f"upload of {sha256}: metadata damaged ({exc}); start over") \
                from exc

    def _size(self, edge: str, sha256: str) -> int:
        try:
            return self._part(edge, sha256).stat().st_size
        except FileNotFoundError:
            return 0

    @contextmanager
    def _locked(self, part: Path, mode: int, *, create: bool = False) -> Iterator[int]:
        """The part file's descriptor under ``flock``; the lock holder may unlink the file, so
        a waiter checks it still holds the file at that path (else: gone, or try again)."""
        while True:
            flags = os.O_RDWR | (os.O_CREAT if create else 0)
            try:
                fd = os.open(part, flags, 0o640)
            except FileNotFoundError:
                raise UploadNotFound(f"no upload at {part.name}") from None
            try:
                fcntl.flock(fd, mode)
                if _same_file(fd, part):
                    yield fd
                    return
            finally:
                os.close(fd)
            if not create:
                raise UploadNotFound(f"upload {part.name} was just finished or discarded")

    def _finish(self, edge: str, sha256: str, fd: int, meta: UploadMeta,
                on_filed: OnFiled) -> Filed:
        actual = _hash_fd(fd)
        if actual != sha256:
            self._discard(edge, sha256)
            raise ChecksumMismatch(f"the file's sha256 is {actual}, not {sha256}; "
                                   "the upload was discarded, send it again")
        os.fsync(fd)
        filed = Filed(edge, sha256, self._place(edge, sha256, meta), meta)
        on_filed(filed)
        self._discard(edge, sha256)
        return filed

    def _place(self, edge: str, sha256: str, meta: UploadMeta) -> str:
        """Hard-link the part file to its final name (never over another file) -> relative."""
        folder = Path(safe_component(edge), meta.day, safe_component(meta.agent or UNASSIGNED))
        stem = safe_component(f"{meta.call_id}-{meta.leg}")
        target_dir = self.root / folder
        target_dir.mkdir(parents=True, exist_ok=True)
        part = self._part(edge, sha256)
        for name in (f"{stem}.mp3", f"{stem}-{sha256[:12]}.mp3"):
            target = target_dir / name
            try:
                os.link(part, target)
            except FileExistsError:
                if _file_sha256(target) == sha256:
                    return (folder / name).as_posix()    # filed before a crash: the same bytes
                continue
            _fsync_dir(target_dir)
            return (folder / name).as_posix()
        raise BadUpload(f"{folder}/{stem}.mp3 exists twice with other contents")

    def _discard(self, edge: str, sha256: str) -> None:
        for path in (self._part(edge, sha256), self._sidecar(edge, sha256)):
            path.unlink(missing_ok=True)


# --- helpers -------------------------------------------------------------------------------------

def _text(body: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = body.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str) or len(value) > MAX_NAME_LENGTH or (required and not value.strip()):
        raise BadUpload(f"{key}: expected a non-empty text of at most {MAX_NAME_LENGTH} characters"
                        if required else f"{key}: expected a text of at most {MAX_NAME_LENGTH}"
                        " characters")
    return value


def _integer(body: Mapping[str, Any], key: str, minimum: int, maximum: int = 2**31) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise BadUpload(f"{key}: expected an integer from {minimum} to {maximum}, got {value!r}")
    return value


def _number(body: Mapping[str, Any], key: str, *, required: bool = False) -> Any:
    value = body.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise BadUpload(f"{key}: expected a number >= 0, got {value!r}")
    return float(value)


def _day(value: Any) -> str:
    if isinstance(value, str) and _DAY.fullmatch(value):
        try:
            date.fromisoformat(value)
            return value
        except ValueError:
            pass
    raise BadUpload(f"day: expected YYYY-MM-DD, got {value!r}")


@contextmanager
def _spooled(folder: Path) -> Iterator[Any]:
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, dir=folder) as spool:
        yield spool


def _receive(body: BinaryIO, length: int, spool: Any) -> None:
    """Copy exactly ``length`` bytes of the request into ``spool``, or raise ``Incomplete``."""
    left = length
    try:
        while left:
            data = body.read(min(COPY_BYTES, left))
            if not data:
                break
            spool.write(data)
            left -= len(data)
    except (OSError, ValueError) as exc:
        raise Incomplete(f"connection lost after {length - left} of {length} bytes: {exc}") \
            from exc
    except Exception as exc:   # werkzeug's ClientDisconnected is an HTTPException
        if type(exc).__name__ != "ClientDisconnected":
            raise
        raise Incomplete(f"client went away after {length - left} of {length} bytes") from exc
    if left:
        raise Incomplete(f"chunk ended after {length - left} of {length} bytes")


def _append(fd: int, spool: Any, offset: int) -> None:
    """Write the spooled chunk at ``offset``; on any failure the file is cut back to it."""
    try:
        position = offset
        while data := spool.read(COPY_BYTES):
            view = memoryview(data)
            while view:
                written = os.pwrite(fd, view, position)
                position += written
                view = view[written:]
    except BaseException:
        os.ftruncate(fd, offset)
        raise


def _hash_fd(fd: int) -> str:
    digest = hashlib.sha256()
    position = 0
    while data := os.pread(fd, COPY_BYTES * 4, position):
        digest.update(data)
        position += len(data)
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:   # some file systems refuse a directory fsync; the link is there
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
