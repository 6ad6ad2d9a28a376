"""URL-based storage: ``s3://bucket/key`` on any S3 endpoint and local paths, one API.

Every function takes a location (``s3://bucket/key``, a local path or a ``file://`` URL) and an
optional :class:`S3Config`. Expected failures (missing bucket or object, no permission,
unreachable endpoint) raise :class:`~genreops.core.errors.StorageError` whose message names the URL
and the reason; raw botocore errors never leak out for those.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import unquote, urlsplit

from genreops.core.errors import (
    ObjectNotFoundError,
    ObjectTooLargeError,
    StorageError,
    StorageUnavailableError,
)
from genreops.core.files import atomic_target, atomic_write
from genreops.core.settings import S3Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

Location: TypeAlias = "str | os.PathLike[str]"

# Metadata key (``x-amz-meta-sha256``) written by upload_dir: multipart ETags are not MD5s,
# so a content hash of our own is what makes re-uploads skippable whatever the part size.
SHA256_META = "sha256"
DEFAULT_MULTIPART_THRESHOLD = 8 * 1024 * 1024
_HASH_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: ``relative`` is its posix key under the listed prefix."""

    url: str
    relative: str
    size: int
    fingerprint: str  # ETag for S3, "<size>-<mtime_ns>" for local files


@dataclass(frozen=True)
class UploadReport:
    """What upload_dir did; ``bytes`` counts only what was actually sent."""

    uploaded: int
    skipped: int
    bytes: int


# --------------------------------------------------------------------------------------------
# URLs


def is_s3_url(url: Location) -> bool:
    return isinstance(url, str) and url[:5].lower() == "s3://"


def _object_key(url: str) -> tuple[str, str]:
    """Bucket and key of a URL that must name one object (not a bucket or a folder)."""
    bucket, key = split_s3_url(url)
    if not key or key.endswith("/"):
        raise StorageError(f"{url}: not an object key (the URL names a bucket or folder)")
    return bucket, key


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → ``("bucket", "a/b")``; the key may be empty."""
    if not is_s3_url(url):
        raise StorageError(f"{url}: not an s3:// URL")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise StorageError(f"{url}: no bucket name in URL")
    return bucket, key


# Longest name segment most filesystems take (ext4, s3rver's folders on disk) and longest S3 key.
MAX_SEGMENT_BYTES = 255
MAX_S3_KEY_BYTES = 1024


def _check_segments(url: str, segments: list[str]) -> list[str]:
    """Drop empty and '.' segments; refuse what could leave the prefix or break a store.

    Refused: '..'; backslashes (a path separator on Windows, so ``..\\x`` would climb
    there); NUL and other control characters (truncate C paths, split log and CSV lines);
    names that are not valid UTF-8; segments longer than filesystems take.
    """
    kept = []
    for segment in segments:
        if segment in ("", "."):
            continue
        if segment == "..":
            raise StorageError(f"{url}: '..' is not allowed in object names (path traversal)")
        if "\\" in segment:
            raise StorageError(
                f"{url}: backslashes are not allowed in object names ({segment!r}; a path "
                "separator on Windows)"
            )
        if any(ord(c) < 32 or ord(c) == 127 for c in segment):
            raise StorageError(
                f"{url}: control characters (NUL, newline, ...) are not allowed in object "
                f"names ({segment!r})"
            )
        try:
            size = len(segment.encode("utf-8"))
        except UnicodeEncodeError as error:  # lone surrogates: a name that was not UTF-8
            raise StorageError(f"{url}: object names must be valid UTF-8 ({segment!r})") from error
        if size > MAX_SEGMENT_BYTES:
            raise StorageError(
                f"{url}: object name segment too long ({size} bytes; at most "
                f"{MAX_SEGMENT_BYTES}): {segment[:40]!r}..."
            )
        kept.append(segment)
    return kept


def _file_url_segment(segment: str) -> str:
    """A literal name as a file:// URL segment: ``_local_path`` percent-decodes URLs, so an
    unescaped ``%2e%2e`` would come back as '..' (and ``?``/``#`` would cut the path)."""
    return segment.replace("%", "%25").replace("?", "%3F").replace("#", "%23")


def join_url(base: Location, *parts: str) -> str:
    """Append relative posix parts to a location; the result always stays under ``base``.

    Parts are literal names (clip ids, file names), never URL-encoded: '..' segments,
    absolute parts, backslashes, control characters and over-long names are refused with a
    StorageError naming the base; on file:// bases '%', '?' and '#' are escaped so the name
    decodes back to itself.
    """
    base_str = os.fspath(base)
    for part in parts:
        if part.startswith("/"):
            raise StorageError(f"{base_str}: cannot join absolute path {part!r}")
    segments = _check_segments(base_str, [s for part in parts for s in part.split("/")])
    if not segments:
        return base_str
    if is_s3_url(base_str):
        joined = f"{base_str.rstrip('/')}/{'/'.join(segments)}"
        size = len(split_s3_url(joined)[1].encode("utf-8"))
        if size > MAX_S3_KEY_BYTES:
            raise StorageError(
                f"{base_str}: object key too long ({size} bytes; S3 allows {MAX_S3_KEY_BYTES})"
            )
        return joined
    if base_str.startswith("file://"):
        return f"{base_str.rstrip('/')}/{'/'.join(_file_url_segment(s) for s in segments)}"
    return str(Path(base_str).joinpath(*segments))


def _local_path(url: Location) -> Path:
    text = os.fspath(url)
    if text.startswith("file://"):
        parsed = urlsplit(text)
        if parsed.netloc not in ("", "localhost"):
            raise StorageError(f"{text}: file:// URLs on other hosts are not supported")
        return Path(unquote(parsed.path))
    return Path(text)


# --------------------------------------------------------------------------------------------
# S3 client and error mapping

_clients: dict[tuple[int, S3Config], S3Client] = {}
_clients_lock = threading.Lock()


def s3_client(s3: S3Config | None = None) -> S3Client:
    """A cached boto3 client per config and process (clients are thread-safe, sessions are not)."""
    config = s3 or S3Config()
    key = (os.getpid(), config)  # a forked child must not reuse its parent's connections
    client = _clients.get(key)
    if client is not None:
        return client
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _make_client(config)
            _clients[key] = client
    return client


def _make_client(config: S3Config) -> S3Client:
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {
        "retries": {"max_attempts": 5, "mode": "standard"},
        "connect_timeout": 5,
        "read_timeout": 60,
        "max_pool_connections": 32,
    }
    if config.endpoint_url:
        # S3-compatible servers (s3rver, MinIO, LocalStack) want path-style buckets and may not
        # understand the CRC checksums (aws-chunked trailers) botocore >= 1.36 sends by default.
        options["s3"] = {"addressing_style": "path"}
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    session = boto3.session.Session()
    client: S3Client = session.client(
        "s3",
        endpoint_url=config.endpoint_url,
        region_name=config.region,
        aws_access_key_id=config.access_key_id,
        aws_secret_access_key=config.secret_access_key,
        config=Config(**options),
    )
    return client


def _reason(error: Exception, s3: S3Config | None) -> str:
    """A one-line, user-facing reason for a botocore/boto3 failure."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    endpoint = (s3.endpoint_url if s3 else None) or "AWS S3"
    if isinstance(error, (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError)):
        return f"cannot reach S3 endpoint {endpoint} ({error})"
    if isinstance(error, ReadTimeoutError):
        return f"S3 endpoint {endpoint} timed out"
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return "no S3 credentials (set GENREOPS_S3_ACCESS_KEY_ID/SECRET_ACCESS_KEY or AWS_* keys)"
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        code = str(info.get("Code", ""))
        message = str(info.get("Message", "")) or code
        if code == "NoSuchBucket":
            return "bucket does not exist"
        if code in ("NoSuchKey", "404", "NotFound"):
            return "no such object"
        if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
            return "access denied (check the S3 credentials and permissions)"
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return f"S3 rejected the credentials ({code}) at {endpoint}"
        return f"S3 error {code}: {message}"
    return f"{type(error).__name__}: {error}"


def _is_s3_failure(error: Exception) -> bool:
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(error, (BotoCoreError, ClientError, Boto3Error))


def _error_class(error: Exception) -> type[StorageError]:
    """Missing items fail alone; an unreachable or failing store is retried by callers."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(error, (ConnectionError, HTTPClientError)):
        return StorageUnavailableError
    if isinstance(error, ClientError):
        code = _error_code(error)
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in ("NoSuchBucket", "NoSuchKey", "404", "NotFound"):
            return ObjectNotFoundError
        if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
            return StorageUnavailableError
    return StorageError


def _error_code(error: Exception) -> str:
    from botocore.exceptions import ClientError

    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


@contextmanager
def _s3_errors(url: str, s3: S3Config | None) -> Iterator[None]:
    try:
        yield
    except StorageError:
        raise
    except Exception as error:
        from boto3.exceptions import S3UploadFailedError

        if isinstance(error, S3UploadFailedError):  # wraps the ClientError only as text
            raise StorageError(f"{url}: upload failed ({error})") from error
        if _is_s3_failure(error):
            raise _error_class(error)(f"{url}: {_reason(error, s3)}") from error
        raise


@contextmanager
def _local_errors(url: Location) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError as error:
        raise ObjectNotFoundError(f"{os.fspath(url)}: no such file or directory") from error
    except IsADirectoryError as error:
        raise StorageError(f"{os.fspath(url)}: is a directory") from error
    except NotADirectoryError as error:
        raise StorageError(f"{os.fspath(url)}: a parent is not a directory") from error
    except PermissionError as error:
        raise StorageError(f"{os.fspath(url)}: permission denied") from error
    except OSError as error:
        raise StorageError(f"{os.fspath(url)}: {error.strerror or error}") from error


def _too_large(url: str, size: int, max_bytes: int) -> StorageError:
    return ObjectTooLargeError(f"{url}: too large ({size:,} bytes; the limit is {max_bytes:,})")


# --------------------------------------------------------------------------------------------
# Objects


def read_bytes(url: Location, *, s3: S3Config | None = None, max_bytes: int | None = None) -> bytes:
    """The whole object; with ``max_bytes`` the size is checked before the body is read."""
    if is_s3_url(url):
        text = os.fspath(url)
        bucket, key = _object_key(text)
        with _s3_errors(text, s3):
            response = s3_client(s3).get_object(Bucket=bucket, Key=key)
            body = response["Body"]
            size = int(response.get("ContentLength", 0))
            if max_bytes is not None and size > max_bytes:
                body.close()
                raise _too_large(text, size, max_bytes)
            try:
                return body.read()
            finally:
                body.close()
    path = _local_path(url)
    with _local_errors(url):
        if max_bytes is not None:
            size = path.stat().st_size
            if size > max_bytes:
                raise _too_large(os.fspath(url), size, max_bytes)
        return path.read_bytes()


def write_bytes(url: Location, data: bytes, *, s3: S3Config | None = None) -> None:
    """Write an object whole; local files are replaced atomically (no half-written files)."""
    if is_s3_url(url):
        text = os.fspath(url)
        bucket, key = _object_key(text)
        with _s3_errors(text, s3):
            s3_client(s3).put_object(Bucket=bucket, Key=key, Body=data)
        return
    path = _local_path(url)
    with _local_errors(url):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)


def read_text(url: Location, *, s3: S3Config | None = None, encoding: str = "utf-8") -> str:
    return read_bytes(url, s3=s3).decode(encoding)


def write_text(
    url: Location, text: str, *, s3: S3Config | None = None, encoding: str = "utf-8"
) -> None:
    write_bytes(url, text.encode(encoding), s3=s3)


def exists(url: Location, *, s3: S3Config | None = None) -> bool:
    """True if the object (or, for ``s3://bucket`` alone, the bucket) exists."""
    if not is_s3_url(url):
        return _local_path(url).exists()
    text = os.fspath(url)
    bucket, key = split_s3_url(text)
    client = s3_client(s3)
    with _s3_errors(text, s3):
        try:
            if key:
                client.head_object(Bucket=bucket, Key=key)
            else:
                client.head_bucket(Bucket=bucket)
        except Exception as error:
            # HEAD has no body: a missing bucket and a missing key both answer 404.
            if _error_code(error) in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
                return False
            raise
    return True


def ensure_bucket(url: Location, *, s3: S3Config | None = None) -> None:
    """Create the bucket of an s3:// URL if missing (or the local folder); idempotent."""
    if not is_s3_url(url):
        with _local_errors(url):
            _local_path(url).mkdir(parents=True, exist_ok=True)
        return
    text = os.fspath(url)
    bucket, _ = split_s3_url(text)
    client = s3_client(s3)
    with _s3_errors(f"s3://{bucket}", s3):
        try:
            client.head_bucket(Bucket=bucket)
            return
        except Exception as error:
            if _error_code(error) not in ("404", "NoSuchBucket", "NotFound"):
                raise
        region = (s3 or S3Config()).region
        try:
            if region == "us-east-1":
                client.create_bucket(Bucket=bucket)
            else:
                client.create_bucket(
                    Bucket=bucket,
                    CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
                )
        except Exception as error:
            if _error_code(error) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
    logger.info("created bucket s3://%s", bucket)


def list_objects(
    prefix_url: Location,
    *,
    s3: S3Config | None = None,
    suffixes: tuple[str, ...] | None = None,
) -> list[ObjectInfo]:
    """Every object under a folder-like prefix (recursive), sorted by relative key.

    ``suffixes`` filters case-insensitively (e.g. ``(".wav", ".flac")``).
    """
    wanted = tuple(s.lower() for s in suffixes) if suffixes is not None else None
    if is_s3_url(prefix_url):
        items = _list_s3(os.fspath(prefix_url), s3)
    else:
        items = _list_local(prefix_url)
    if wanted is not None:
        items = [item for item in items if item.relative.lower().endswith(wanted)]
    return sorted(items, key=lambda item: item.relative)


def _list_s3(url: str, s3: S3Config | None) -> list[ObjectInfo]:
    bucket, key = split_s3_url(url)
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    base = f"s3://{bucket}/{prefix}"
    items = []
    with _s3_errors(url, s3):
        paginator = s3_client(s3).get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                name = entry["Key"]
                relative = name[len(prefix) :]
                if not relative or relative.endswith("/"):  # folder markers
                    continue
                items.append(
                    ObjectInfo(
                        url=base + relative,
                        relative=relative,
                        size=int(entry.get("Size", 0)),
                        fingerprint=str(entry.get("ETag", "")).strip('"'),
                    )
                )
    return items


def _list_local(url: Location) -> list[ObjectInfo]:
    root = _local_path(url)
    if not root.exists():
        raise StorageError(f"{os.fspath(url)}: no such directory")
    if not root.is_dir():
        raise StorageError(f"{os.fspath(url)}: not a directory")
    items = []

    def _raise(error: OSError) -> None:
        raise error

    with _local_errors(url):
        for folder, _dirs, files in os.walk(root, onerror=_raise):
            for name in files:
                path = Path(folder) / name
                try:
                    stat = path.stat()
                except FileNotFoundError:  # broken symlink or removed while listing
                    continue
                relative = path.relative_to(root).as_posix()
                items.append(
                    ObjectInfo(
                        url=str(path),
                        relative=relative,
                        size=stat.st_size,
                        fingerprint=f"{stat.st_size}-{stat.st_mtime_ns}",
                    )
                )
    return items


def download_to(url: Location, local_path: Location, *, s3: S3Config | None = None) -> Path:
    """Copy an object to a local file (atomically); returns the local path."""
    target = Path(os.fspath(local_path))
    with _local_errors(local_path):
        target.parent.mkdir(parents=True, exist_ok=True)
    if not is_s3_url(url):
        source = _local_path(url)
        with _local_errors(url):
            if not source.is_file():
                raise FileNotFoundError(source)
        with _local_errors(local_path), atomic_target(target) as tmp:
            shutil.copyfile(source, tmp)
        return target
    text = os.fspath(url)
    bucket, key = _object_key(text)
    with atomic_target(target) as tmp, _s3_errors(text, s3):
        s3_client(s3).download_file(bucket, key, str(tmp))
    return target


# --------------------------------------------------------------------------------------------
# Folder upload


def _hashes(path: Path) -> tuple[str, str]:
    """(md5, sha256) hex of a file in one pass."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


def upload_dir(
    local_dir: Location,
    dest_url: Location,
    *,
    s3: S3Config | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int = 4,
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
) -> UploadReport:
    """Mirror a local folder (recursively) under ``dest_url``; unchanged files are skipped.

    An object counts as unchanged when its size matches and either its single-part ETag
    equals the file's MD5 or its ``sha256`` metadata (written here) equals the file's SHA-256,
    so re-running after an interruption only sends what is missing or changed. Files are
    never deleted at the destination. ``progress`` is called with 1 per finished file.
    """
    root = _local_path(local_dir)
    if not root.is_dir():
        raise StorageError(f"{os.fspath(local_dir)}: not a directory")
    files = [(item.relative, Path(item.url), item.size) for item in _list_local(root)]
    dest = os.fspath(dest_url)
    for relative, _path, _size in files:
        join_url(dest, relative)  # refuse names that would escape the prefix before sending

    if is_s3_url(dest):
        existing = {item.relative: item for item in _list_s3(dest, s3)}

        def one(relative: str, path: Path, size: int) -> int:
            url = join_url(dest, relative)
            previous = existing.get(relative)
            return _upload_one_s3(path, url, size, previous, s3, multipart_threshold)
    else:

        def one(relative: str, path: Path, size: int) -> int:
            return _copy_one_local(path, _local_path(join_url(dest, relative)), size)

    uploaded = skipped = sent = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(one, *entry) for entry in files]
        try:
            for future in as_completed(futures):
                size_sent = future.result()
                if size_sent < 0:
                    skipped += 1
                else:
                    uploaded += 1
                    sent += size_sent
                if progress is not None:
                    progress(1)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    logger.info("%s: %d uploaded, %d unchanged (%d bytes)", dest, uploaded, skipped, sent)
    return UploadReport(uploaded=uploaded, skipped=skipped, bytes=sent)


def _upload_one_s3(
    path: Path,
    url: str,
    size: int,
    existing: ObjectInfo | None,
    s3: S3Config | None,
    multipart_threshold: int,
) -> int:
    """Upload one file unless unchanged; returns bytes sent, or -1 when skipped."""
    from boto3.s3.transfer import TransferConfig

    with _local_errors(path):
        md5, sha = _hashes(path)
    bucket, key = split_s3_url(url)
    client = s3_client(s3)
    if existing is not None and existing.size == size:
        if existing.fingerprint == md5:  # single-part upload of the same bytes
            return -1
        with _s3_errors(url, s3):
            try:
                head = client.head_object(Bucket=bucket, Key=key)
            except Exception as error:
                if _error_code(error) not in ("404", "NoSuchKey", "NotFound"):
                    raise
                head = None
        if head is not None and head.get("Metadata", {}).get(SHA256_META) == sha:
            return -1
    transfer = TransferConfig(
        multipart_threshold=multipart_threshold,
        multipart_chunksize=max(5 * 1024 * 1024, multipart_threshold),
        use_threads=False,  # upload_dir already runs files in parallel
    )
    with _s3_errors(url, s3):
        client.upload_file(
            str(path), bucket, key, ExtraArgs={"Metadata": {SHA256_META: sha}}, Config=transfer
        )
    logger.debug("uploaded %s → %s", path, url)
    return size


def _copy_one_local(path: Path, target: Path, size: int) -> int:
    with _local_errors(target):
        if target.is_file() and target.stat().st_size == size and _hashes(target) == _hashes(path):
            return -1
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_target(target) as tmp:
            shutil.copyfile(path, tmp)
    return size
