"""The artifact store: content-addressed blobs on a folder or S3, behind one interface.

Everything that moves bytes lives here — streaming writes with hashing, atomic placement,
ranged reads, multipart/resumable parts, presigned URLs and streamed tar archives — so the
services only deal with rows and rules. Files are never held in memory whole: data moves in
``CHUNK`` sized pieces.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import queue
import tarfile
import tempfile
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import BinaryIO, Protocol

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import storages

from models_app.models.artifacts import blob_key
from registry_project.errors import BlobMissing

CHUNK = 1024 * 1024
READ_CHUNK = 2 * CHUNK  # larger reads from the socket: fewer calls per GiB
MAX_PATH_LENGTH = 1024
SHA256_HEX = frozenset("0123456789abcdef")


# --- Paths ----------------------------------------------------------------------------------


def validate_file_path(path: str) -> str:
    """Return ``path`` if it is a safe relative POSIX path inside a version, else raise.

    Refused: empty, absolute, ``..`` or ``.`` segments, empty segments, backslashes, NUL and
    other control characters, invisible/bidi format characters and surrogates, more than 1,024
    characters, and paths that Unicode NFC would change (two spellings of one name must not
    become two files).
    """
    if not isinstance(path, str) or not path:
        raise ValidationError({"path": "A file path is required."})
    if len(path) > MAX_PATH_LENGTH:
        raise ValidationError({"path": f"A file path may have at most {MAX_PATH_LENGTH} characters."})
    if "\\" in path:
        raise ValidationError({"path": "Use '/' to separate folders; backslashes are not allowed."})
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise ValidationError({"path": "A file path cannot contain control characters or NUL."})
    if path.startswith("/"):
        raise ValidationError({"path": "A file path must be relative (no leading '/')."})
    if any(unicodedata.category(ch) in ("Cf", "Cs", "Co") for ch in path):
        # Bidi overrides (U+202E), zero-width characters, BOMs, surrogates, private use: a name
        # that displays as something else than it is (Trojan Source).
        raise ValidationError(
            {"path": "A file path cannot contain invisible or bidirectional-control characters."}
        )
    if unicodedata.normalize("NFC", path) != path:
        raise ValidationError({"path": "A file path must be in Unicode NFC form."})
    segments = path.split("/")
    if any(seg in ("", ".", "..") for seg in segments):
        raise ValidationError({"path": "A file path cannot contain empty, '.' or '..' segments."})
    if posixpath.normpath(path) != path:
        raise ValidationError({"path": "A file path must be normalized."})
    return path


def validate_sha256(value: str, field: str = "sha256") -> str:
    value = (value or "").strip().lower()
    if value.startswith("sha256:"):
        value = value[7:]
    if len(value) != 64 or not set(value) <= SHA256_HEX:
        raise ValidationError({field: "Expected a SHA-256 digest: 64 hexadecimal characters."})
    return value


def manifest_digest(entries: Iterable[tuple[str, str, int]]) -> str:
    """SHA-256 over the sorted ``path\\0sha256\\0size\\n`` lines of a file tree."""
    digest = hashlib.sha256()
    for path, sha256, size in sorted(entries):
        digest.update(f"{path}\0{sha256}\0{size}\n".encode())
    return digest.hexdigest()


# --- Spooling uploads -----------------------------------------------------------------------


@dataclass
class Spooled:
    """Bytes received into a temporary file, with their digest."""

    path: Path
    size: int
    sha256: str

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class Staged:
    """Verified bytes already inside the bucket under a staging key (completed S3 multipart)."""

    key: str
    size: int
    sha256: str
    store: S3Store

    def discard(self) -> None:
        self.store.client.delete_object(Bucket=self.store.bucket, Key=self.key)


class IncompleteUpload(Exception):
    """The client sent fewer bytes than it announced (it went away mid-upload)."""


class _Hasher:
    """SHA-256 computed in a second thread, so hashing overlaps receiving and writing.

    ``hashlib`` releases the GIL on large updates, as socket reads and file writes do: with the
    work split across two threads a transfer runs at the pace of its slowest step instead of
    their sum. The queue is bounded, so at most ``depth`` chunks are held in memory.
    """

    def __init__(self, depth: int = 4) -> None:
        self.digest = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self.digest.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def hexdigest(self) -> str:
        self._queue.put(None)
        self._thread.join()
        return self.digest.hexdigest()


class _Flusher:
    """Flushes written data to disk in the background while more arrives.

    A final fsync of a whole large file would wait for every dirty page at the end; flushing
    every ``FLUSH_EVERY`` bytes as we go overlaps the disk with the network, and the closing
    fsync only has the tail left to write.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._wanted = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name="flush", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._done:
                return
            with contextlib.suppress(OSError):  # the final fsync reports real errors
                os.fdatasync(self.fd)

    def kick(self) -> None:
        self._wanted.set()

    def stop(self) -> None:
        self._done = True
        self._wanted.set()
        self._thread.join()


FLUSH_EVERY = 64 * 1024 * 1024


def _copy(
    stream: BinaryIO, out, hasher: _Hasher, flusher: _Flusher, *, expected_size: int | None, limit: int
) -> int:
    size = 0
    next_flush = FLUSH_EVERY
    while True:
        want = READ_CHUNK if expected_size is None else min(READ_CHUNK, expected_size - size)
        if want <= 0:
            return size
        try:
            chunk = stream.read(want)
        except OSError as exc:  # the connection broke (servers raise IOError subclasses)
            raise IncompleteUpload(f"connection lost after {size} bytes: {exc}") from exc
        if not chunk:
            return size
        size += len(chunk)
        if size > limit:
            raise ValidationError({"file": f"The file is larger than the limit of {limit} bytes."})
        hasher.update(chunk)
        out.write(chunk)
        if size >= next_flush:
            flusher.kick()
            next_flush += FLUSH_EVERY


def spool(stream: BinaryIO, *, expected_size: int | None, limit: int, directory: Path) -> Spooled:
    """Copy ``stream`` to a new file in ``directory`` while hashing it; fsync before returning.

    Raises ``IncompleteUpload`` when fewer than ``expected_size`` bytes arrive and
    ``ValidationError`` past ``limit``; the temporary file is removed in both cases.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", dir=directory)
    path = Path(name)
    hasher = _Hasher()
    flusher = _Flusher(fd)
    try:
        with os.fdopen(fd, "wb", buffering=0) as out:
            try:
                size = _copy(stream, out, hasher, flusher, expected_size=expected_size, limit=limit)
            finally:
                flusher.stop()  # before the descriptor closes
            os.fsync(out.fileno())
        sha256 = hasher.hexdigest()
        if expected_size is not None and size != expected_size:
            raise IncompleteUpload(f"received {size} of {expected_size} bytes")
    except BaseException:
        hasher.hexdigest()  # stop the thread
        path.unlink(missing_ok=True)
        raise
    return Spooled(path=path, size=size, sha256=sha256)


# --- Stores ---------------------------------------------------------------------------------


class ArtifactStore(Protocol):
    kind: str

    def exists(self, sha256: str) -> bool: ...
    def stored_size(self, sha256: str) -> int | None: ...
    def spool_dir(self) -> Path: ...
    def place(self, spooled: Spooled | Staged) -> None: ...
    def iter_bytes(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]: ...
    def delete(self, sha256: str) -> None: ...
    def download_url(self, sha256: str, filename: str) -> str | None: ...
    def list_blob_keys(self) -> Iterator[tuple[str, float]]: ...
    # Resumable uploads in parts
    def parts_begin(self, staging_key: str) -> str: ...
    def part_url(self, staging_key: str, backend_upload_id: str, part_number: int) -> str | None: ...
    def part_write(self, staging_key: str, part_number: int, stream: BinaryIO, size: int) -> str: ...
    def parts_list(self, staging_key: str, backend_upload_id: str) -> list[dict]: ...
    def parts_complete(
        self, staging_key: str, backend_upload_id: str, part_count: int, limit: int
    ) -> Spooled: ...
    def parts_abort(self, staging_key: str, backend_upload_id: str) -> None: ...


class FolderStore:
    """Blobs as files below ``ARTIFACT_STORAGE_PATH``; uploads are renamed into place atomically."""

    kind = "folder"

    def __init__(self) -> None:
        self.storage = storages["artifacts"]
        self.root = Path(self.storage.location).resolve()

    def _file(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:  # keys are built by us; this is a last line of defence
            raise ValidationError({"path": "Refusing a key outside the artifact folder."})
        return path

    def exists(self, sha256: str) -> bool:
        return self._file(blob_key(sha256)).is_file()

    def stored_size(self, sha256: str) -> int | None:
        try:
            return self._file(blob_key(sha256)).stat().st_size
        except FileNotFoundError:
            return None

    def spool_dir(self) -> Path:
        # Same file system as the blobs, so placing a blob is a rename, not a copy.
        return self.root / ".spool"

    def place(self, spooled: Spooled) -> None:
        target = self._file(blob_key(spooled.sha256))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(spooled.path, 0o640)
        os.replace(spooled.path, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)

    def iter_bytes(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        # Opened now, not at the first chunk: a missing or unreadable file is an error answer
        # (the caller has not sent a status line yet), not a 200 cut off after its headers.
        try:
            fh = open(self._file(blob_key(sha256)), "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError as exc:
            raise BlobMissing(sha256) from exc

        def chunks() -> Iterator[bytes]:
            with fh:
                fh.seek(start)
                remaining = None if end is None else end - start + 1
                while remaining is None or remaining > 0:
                    chunk = fh.read(CHUNK if remaining is None else min(CHUNK, remaining))
                    if not chunk:
                        return
                    if remaining is not None:
                        remaining -= len(chunk)
                    yield chunk

        return chunks()

    def delete(self, sha256: str) -> None:
        self._file(blob_key(sha256)).unlink(missing_ok=True)

    def download_url(self, sha256: str, filename: str) -> str | None:
        return None

    def list_blob_keys(self) -> Iterator[tuple[str, float]]:
        base = self.root / "blobs" / "sha256"
        if not base.exists():
            return
        for path in base.rglob("*"):
            if path.is_file():
                yield path.name, path.stat().st_mtime

    # Parts are files uploads/<id>/<n> written through the API.
    def parts_begin(self, staging_key: str) -> str:
        self._file(staging_key).mkdir(parents=True, exist_ok=True)
        return ""

    def part_url(self, staging_key: str, backend_upload_id: str, part_number: int) -> str | None:
        return None  # the API serves part uploads itself

    def part_write(self, staging_key: str, part_number: int, stream: BinaryIO, size: int) -> str:
        folder = self._file(staging_key)
        if not folder.is_dir():
            raise FileNotFoundError(staging_key)
        spooled = spool(stream, expected_size=size, limit=size, directory=folder)
        os.replace(spooled.path, folder / f"{part_number:06d}")
        return spooled.sha256

    def parts_list(self, staging_key: str, backend_upload_id: str) -> list[dict]:
        folder = self._file(staging_key)
        if not folder.is_dir():
            return []
        parts = []
        for path in sorted(folder.iterdir()):
            if path.name.isdigit():
                parts.append({"part_number": int(path.name), "size": path.stat().st_size})
        return parts

    def parts_complete(
        self, staging_key: str, backend_upload_id: str, part_count: int, limit: int
    ) -> Spooled:
        folder = self._file(staging_key)
        names = [folder / f"{n:06d}" for n in range(1, part_count + 1)]
        missing = [p.name for p in names if not p.is_file()]
        if missing:
            raise ValidationError(
                {"parts": f"Parts not uploaded yet: {', '.join(str(int(m)) for m in missing[:20])}."}
            )
        return spool(_ConcatReader(names), expected_size=None, limit=limit, directory=self.spool_dir())

    def parts_abort(self, staging_key: str, backend_upload_id: str) -> None:
        folder = self._file(staging_key)
        if folder.is_dir():
            for path in folder.iterdir():
                path.unlink(missing_ok=True)
            folder.rmdir()


class _ConcatReader:
    """Reads a list of files as one stream."""

    def __init__(self, paths: list[Path]) -> None:
        self._paths = list(paths)
        self._current: BinaryIO | None = None

    def read(self, n: int) -> bytes:
        while True:
            if self._current is None:
                if not self._paths:
                    return b""
                self._current = open(self._paths.pop(0), "rb")  # noqa: SIM115 - closed below
            chunk = self._current.read(n)
            if chunk:
                return chunk
            self._current.close()
            self._current = None


class S3Store:
    """Blobs as S3 objects; large uploads go straight to the bucket with presigned part URLs."""

    kind = "s3"

    def __init__(self) -> None:
        self.storage = storages["artifacts"]
        self.client = self.storage.connection.meta.client
        self.bucket = self.storage.bucket_name

    def _key(self, key: str) -> str:
        return self.storage._normalize_name(key)  # applies S3_PREFIX

    def exists(self, sha256: str) -> bool:
        return self.stored_size(sha256) is not None

    def stored_size(self, sha256: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(blob_key(sha256)))[
                "ContentLength"
            ]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def spool_dir(self) -> Path:
        return Path(settings.VAR_DIR) / "spool"

    def place(self, spooled: Spooled | Staged) -> None:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=64 * CHUNK, multipart_chunksize=64 * CHUNK, max_concurrency=4
        )
        target = self._key(blob_key(spooled.sha256))
        if isinstance(spooled, Staged):  # already in the bucket: copy server-side, no bytes through us
            self.client.copy({"Bucket": self.bucket, "Key": spooled.key}, self.bucket, target, Config=config)
        else:
            self.client.upload_file(str(spooled.path), self.bucket, target, Config=config)
        spooled.discard()

    def iter_bytes(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        kwargs = {"Bucket": self.bucket, "Key": self._key(blob_key(sha256))}
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end}"
        # GET now, not at the first chunk: an S3 outage is an error answer, not a cut-off stream.
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(**kwargs)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise BlobMissing(sha256) from exc
            raise

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(CHUNK)
            finally:
                body.close()

        return chunks()

    def delete(self, sha256: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(blob_key(sha256)))

    def download_url(self, sha256: str, filename: str) -> str | None:
        safe = filename.replace('"', "").replace("\\", "")
        return self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self._key(blob_key(sha256)),
                "ResponseContentDisposition": f'attachment; filename="{safe}"',
            },
            ExpiresIn=settings.STORAGES["artifacts"]["OPTIONS"]["querystring_expire"],
        )

    def list_blob_keys(self) -> Iterator[tuple[str, float]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key("blobs/sha256/")):
            for item in page.get("Contents", []):
                yield item["Key"].rsplit("/", 1)[-1], item["LastModified"].timestamp()

    def parts_begin(self, staging_key: str) -> str:
        return self.client.create_multipart_upload(Bucket=self.bucket, Key=self._key(staging_key))["UploadId"]

    def part_url(self, staging_key: str, backend_upload_id: str, part_number: int) -> str | None:
        return self.client.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": self.bucket,
                "Key": self._key(staging_key),
                "UploadId": backend_upload_id,
                "PartNumber": part_number,
            },
            ExpiresIn=settings.MODELYARD_UPLOAD_SESSION_HOURS * 3600,
        )

    def part_write(self, staging_key: str, part_number: int, stream: BinaryIO, size: int) -> str:
        raise ValidationError({"part": "On S3, upload parts to their presigned URLs."})

    def parts_list(self, staging_key: str, backend_upload_id: str) -> list[dict]:
        from botocore.exceptions import ClientError

        parts: list[dict] = []
        paginator = self.client.get_paginator("list_parts")
        pages = paginator.paginate(Bucket=self.bucket, Key=self._key(staging_key), UploadId=backend_upload_id)
        try:
            for page in pages:
                parts += [
                    {"part_number": p["PartNumber"], "size": p["Size"], "etag": p["ETag"]}
                    for p in page.get("Parts", [])
                ]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchUpload", "404"):
                raise
            return []  # aborted or completed: nothing left, as on the folder store
        return parts

    def parts_complete(self, staging_key: str, backend_upload_id: str, part_count: int, limit: int) -> Staged:
        parts = self.parts_list(staging_key, backend_upload_id)
        have = {p["part_number"] for p in parts}
        missing = [n for n in range(1, part_count + 1) if n not in have]
        if missing:
            raise ValidationError({"parts": f"Parts not uploaded yet: {', '.join(map(str, missing[:20]))}."})
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self._key(staging_key),
            UploadId=backend_upload_id,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": p["part_number"], "ETag": p["etag"]}
                    for p in parts
                    if p["part_number"] <= part_count
                ]
            },
        )
        # The registry does not trust the client's word for the content: it reads the object back,
        # hashing it, before the bytes may become a blob (then copies it server-side).
        key = self._key(staging_key)
        digest, size = hashlib.sha256(), 0
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            for chunk in body.iter_chunks(8 * CHUNK):
                size += len(chunk)
                if size > limit:
                    break
                digest.update(chunk)
        finally:
            body.close()
        return Staged(key=key, size=size, sha256=digest.hexdigest(), store=self)

    def parts_abort(self, staging_key: str, backend_upload_id: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self._key(staging_key), UploadId=backend_upload_id
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchUpload", "404"):
                raise


@cache
def get_store() -> ArtifactStore:
    """The configured store: S3 when ``S3_BUCKET`` is set, the artifact folder otherwise."""
    return S3Store() if settings.S3_BUCKET else FolderStore()


# --- Archives -------------------------------------------------------------------------------


def stream_tar(entries: Iterable[tuple[str, int, float, Iterable[bytes]]]) -> Iterator[bytes]:
    """Yield a POSIX (pax) tar of ``(path, size, mtime, chunks)`` without buffering any file.

    Headers are produced by ``tarfile`` itself; file contents are yielded as they are read.
    """
    total = 0
    for path, size, mtime, chunks in entries:
        info = tarfile.TarInfo(name=path)
        info.size = size
        info.mtime = int(mtime)
        info.mode = 0o644
        header = info.tobuf(format=tarfile.PAX_FORMAT)
        total += len(header)
        yield header
        sent = 0
        for chunk in chunks:
            sent += len(chunk)
            yield chunk
        if sent != size:  # the store lost bytes: stop rather than emit a corrupt archive
            raise OSError(f"{path}: expected {size} bytes, read {sent}")
        total += size
        if remainder := size % tarfile.BLOCKSIZE:
            total += tarfile.BLOCKSIZE - remainder
            yield b"\0" * (tarfile.BLOCKSIZE - remainder)
    # Two zero blocks end the archive; pad to a whole record as tar(1) writes it.
    total += 2 * tarfile.BLOCKSIZE
    yield b"\0" * (2 * tarfile.BLOCKSIZE + (-total % tarfile.RECORDSIZE))
