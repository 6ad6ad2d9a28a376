"""Storage on local paths and file:// URLs: the same API the S3 backend offers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from genreops.core.errors import StorageError
from genreops.data.storage import (
    download_to,
    ensure_bucket,
    exists,
    is_s3_url,
    join_url,
    list_objects,
    read_bytes,
    read_text,
    split_s3_url,
    upload_dir,
    write_bytes,
    write_text,
)

pytestmark = pytest.mark.unit


def test_s3_url_parsing() -> None:
    assert is_s3_url("s3://bucket/a/b.wav")
    assert is_s3_url("S3://bucket")
    assert not is_s3_url("/tmp/s3://x")
    assert not is_s3_url(Path("s3:/bucket"))
    assert split_s3_url("s3://bucket/a/b.wav") == ("bucket", "a/b.wav")
    assert split_s3_url("s3://bucket") == ("bucket", "")
    with pytest.raises(StorageError, match="no bucket"):
        split_s3_url("s3:///key")
    with pytest.raises(StorageError, match="not an s3"):
        split_s3_url("/local/path")


def test_join_url_on_every_kind_of_base(tmp_path: Path) -> None:
    assert join_url("s3://b/prefix/", "chunks", "x.parquet") == "s3://b/prefix/chunks/x.parquet"
    assert join_url("s3://b", "a/b.wav") == "s3://b/a/b.wav"
    assert join_url("s3://b/p", "./a//b.wav") == "s3://b/p/a/b.wav"
    assert join_url("file:///data/x", "y") == "file:///data/x/y"
    assert join_url(tmp_path, "a", "b.txt") == str(tmp_path / "a" / "b.txt")


@pytest.mark.parametrize("part", ["../escape", "a/../../b", ".."])
def test_join_url_rejects_traversal(part: str) -> None:
    with pytest.raises(StorageError, match="traversal"):
        join_url("s3://bucket/prefix", part)
    with pytest.raises(StorageError, match="traversal"):
        join_url("/data/root", part)


def test_join_url_rejects_absolute_parts() -> None:
    with pytest.raises(StorageError, match="absolute"):
        join_url("s3://bucket/prefix", "/etc/passwd")


def test_write_read_roundtrip_creates_parents(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "blob.bin"
    write_bytes(str(target), b"\x00\x01payload")
    assert read_bytes(str(target)) == b"\x00\x01payload"
    write_text(target.as_uri(), "héllo")  # file:// URLs work too
    assert read_text(str(target)) == "héllo"
    assert exists(target.as_uri())
    # atomic replace leaves no temp files behind
    assert sorted(p.name for p in target.parent.iterdir()) == ["blob.bin"]


def test_missing_file_error_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    assert not exists(str(missing))
    with pytest.raises(StorageError, match=r"nope\.wav: no such file"):
        read_bytes(str(missing))
    with pytest.raises(StorageError, match="is a directory"):
        read_bytes(str(tmp_path))


def test_max_bytes_checks_size_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 1000)
    assert read_bytes(str(path), max_bytes=1000) == b"x" * 1000
    with pytest.raises(StorageError, match=r"big\.bin: too large \(1,000 bytes; the limit is 999"):
        read_bytes(str(path), max_bytes=999)


def test_list_objects_is_recursive_sorted_and_filtered(tmp_path: Path) -> None:
    (tmp_path / "b" / "sub").mkdir(parents=True)
    (tmp_path / "a.WAV").write_bytes(b"1")
    (tmp_path / "b" / "x.txt").write_bytes(b"22")
    (tmp_path / "b" / "sub" / "y.flac").write_bytes(b"333")
    items = list_objects(str(tmp_path))
    assert [i.relative for i in items] == ["a.WAV", "b/sub/y.flac", "b/x.txt"]
    assert [i.size for i in items] == [1, 3, 2]
    assert Path(items[1].url).read_bytes() == b"333"
    audio = list_objects(tmp_path.as_uri(), suffixes=(".wav", ".flac"))
    assert [i.relative for i in audio] == ["a.WAV", "b/sub/y.flac"]


def test_local_fingerprint_changes_when_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "clip.wav"
    path.write_bytes(b"abc")
    before = list_objects(str(tmp_path))[0].fingerprint
    path.write_bytes(b"abd")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert list_objects(str(tmp_path))[0].fingerprint != before


def test_list_objects_missing_root(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no such directory"):
        list_objects(str(tmp_path / "absent"))
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageError, match="not a directory"):
        list_objects(str(tmp_path / "file"))


def _tree(root: Path) -> None:
    (root / "blues").mkdir(parents=True)
    (root / "rock").mkdir()
    (root / "blues" / "one.wav").write_bytes(b"a" * 100)
    (root / "rock" / "two.wav").write_bytes(b"b" * 200)
    (root / "notes.txt").write_bytes(b"hi")


def test_upload_dir_to_local_destination_is_idempotent(tmp_path: Path) -> None:
    source, dest = tmp_path / "src", tmp_path / "dest"
    _tree(source)
    calls: list[int] = []
    first = upload_dir(source, str(dest), progress=calls.append)
    assert (first.uploaded, first.skipped, first.bytes) == (3, 0, 302)
    assert sum(calls) == 3
    assert (dest / "rock" / "two.wav").read_bytes() == b"b" * 200

    second = upload_dir(source, str(dest))
    assert (second.uploaded, second.skipped, second.bytes) == (0, 3, 0)

    (source / "rock" / "two.wav").write_bytes(b"c" * 200)  # same size, new content
    third = upload_dir(source, str(dest))
    assert (third.uploaded, third.skipped, third.bytes) == (1, 2, 200)
    assert (dest / "rock" / "two.wav").read_bytes() == b"c" * 200


def test_upload_dir_requires_a_folder(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not a directory"):
        upload_dir(tmp_path / "missing", str(tmp_path / "dest"))


def test_download_to_and_ensure_bucket_locally(tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(b"data")
    target = download_to(str(source), tmp_path / "out" / "copy.bin")
    assert target.read_bytes() == b"data"
    with pytest.raises(StorageError, match="no such file"):
        download_to(str(tmp_path / "absent"), tmp_path / "x")
    ensure_bucket(str(tmp_path / "new" / "folder"))
    assert (tmp_path / "new" / "folder").is_dir()


def test_s3_urls_naming_no_object_are_refused_before_any_request() -> None:
    with pytest.raises(StorageError, match="not an object key"):
        read_bytes("s3://bucket/folder/")
    with pytest.raises(StorageError, match="not an object key"):
        write_bytes("s3://bucket", b"x")
