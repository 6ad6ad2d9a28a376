"""Storage and dataset discovery against the real embedded S3 server (s3rver)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from genreops.core.errors import GenreopsError, StorageError, TrainingError
from genreops.data.datasets import discover_labeled
from genreops.data.feature_table import load_feature_table
from genreops.data.storage import (
    S3Config,
    download_to,
    ensure_bucket,
    exists,
    list_objects,
    read_bytes,
    s3_client,
    upload_dir,
    write_bytes,
)
from genreops.platform import s3server
from helpers import free_port, gtzan_public_frame

pytestmark = pytest.mark.integration

MB = 1024 * 1024


@pytest.fixture
def bucket(s3_server: Any) -> str:
    """A fresh bucket per test, so tests never see each other's objects."""
    url = f"s3://t-{uuid.uuid4().hex[:12]}"
    ensure_bucket(url, s3=s3_server.config)
    return url


def test_write_read_exists_list(s3_server: Any, bucket: str) -> None:
    s3 = s3_server.config
    write_bytes(f"{bucket}/data/a.bin", b"alpha", s3=s3)
    write_bytes(f"{bucket}/data/sub/b.bin", b"beta!", s3=s3)
    write_bytes(f"{bucket}/other.bin", b"x", s3=s3)
    assert read_bytes(f"{bucket}/data/a.bin", s3=s3) == b"alpha"
    assert exists(f"{bucket}/data/a.bin", s3=s3)
    assert not exists(f"{bucket}/data/zzz.bin", s3=s3)
    assert exists(bucket, s3=s3)
    items = list_objects(f"{bucket}/data", s3=s3)
    assert [(i.relative, i.size) for i in items] == [("a.bin", 5), ("sub/b.bin", 5)]
    assert items[1].url == f"{bucket}/data/sub/b.bin"
    assert items[0].fingerprint  # the ETag
    assert [i.relative for i in list_objects(f"{bucket}/data/", s3=s3, suffixes=(".BIN",))] == [
        "a.bin",
        "sub/b.bin",
    ]
    ensure_bucket(bucket, s3=s3)  # idempotent


def test_missing_object_and_bucket_errors_name_the_url(s3_server: Any, bucket: str) -> None:
    s3 = s3_server.config
    with pytest.raises(StorageError, match=rf"^{bucket}/nope\.wav: no such object$"):
        read_bytes(f"{bucket}/nope.wav", s3=s3)
    with pytest.raises(StorageError, match=r"^s3://no-such-bucket-x/k: bucket does not exist$"):
        read_bytes("s3://no-such-bucket-x/k", s3=s3)
    with pytest.raises(StorageError, match="bucket does not exist"):
        list_objects("s3://no-such-bucket-x/prefix", s3=s3)
    assert not exists("s3://no-such-bucket-x/k", s3=s3)


def test_wrong_credentials_are_reported(s3_server: Any, bucket: str) -> None:
    wrong = S3Config(
        endpoint_url=s3_server.endpoint_url, access_key_id="WRONG", secret_access_key="x"
    )
    with pytest.raises(StorageError, match="rejected the credentials"):
        read_bytes(f"{bucket}/a", s3=wrong)


def test_max_bytes_refuses_large_objects(s3_server: Any, bucket: str) -> None:
    write_bytes(f"{bucket}/big.bin", b"x" * 5000, s3=s3_server.config)
    with pytest.raises(StorageError, match="too large"):
        read_bytes(f"{bucket}/big.bin", s3=s3_server.config, max_bytes=4999)
    assert len(read_bytes(f"{bucket}/big.bin", s3=s3_server.config, max_bytes=5000)) == 5000


def _corpus(root: Path) -> None:
    for genre in ("blues", "rock"):
        (root / genre).mkdir(parents=True)
        for i in range(3):
            (root / genre / f"{genre}.{i:05d}.wav").write_bytes(os.urandom(1000 + i))
    (root / "manifest.json").write_text("{}")
    (root / "rock" / ".DS_Store").write_bytes(b"junk")


def test_upload_dir_skips_unchanged_and_resends_changed(
    s3_server: Any, bucket: str, tmp_path: Path
) -> None:
    s3 = s3_server.config
    _corpus(tmp_path)
    dest = f"{bucket}/corpus"
    calls: list[int] = []
    first = upload_dir(tmp_path, dest, s3=s3, progress=calls.append)
    assert (first.uploaded, first.skipped) == (8, 0)
    assert sum(calls) == 8
    assert (
        read_bytes(f"{dest}/rock/rock.00002.wav", s3=s3)
        == (tmp_path / "rock" / "rock.00002.wav").read_bytes()
    )

    second = upload_dir(tmp_path, dest, s3=s3)
    assert (second.uploaded, second.skipped, second.bytes) == (0, 8, 0)

    changed = tmp_path / "blues" / "blues.00001.wav"
    changed.write_bytes(os.urandom(1001))  # same size, new bytes
    third = upload_dir(tmp_path, dest, s3=s3)
    assert (third.uploaded, third.skipped, third.bytes) == (1, 7, 1001)
    assert read_bytes(f"{dest}/blues/blues.00001.wav", s3=s3) == changed.read_bytes()


def test_discover_labeled_on_s3_prefix(s3_server: Any, bucket: str, tmp_path: Path) -> None:
    _corpus(tmp_path)
    upload_dir(tmp_path, f"{bucket}/gtzan", s3=s3_server.config)
    local = discover_labeled(str(tmp_path))
    remote = discover_labeled(f"{bucket}/gtzan", s3=s3_server.config)
    assert [c.clip_id for c in remote] == [c.clip_id for c in local]
    assert len(remote) == 6
    assert {c.genre for c in remote} == {"blues", "rock"}
    assert remote[0].url == f"{bucket}/gtzan/blues/blues.00000.wav"
    assert read_bytes(remote[0].url, s3=s3_server.config) == Path(local[0].url).read_bytes()


def test_multipart_upload_roundtrip_and_idempotency(
    s3_server: Any, bucket: str, tmp_path: Path
) -> None:
    s3 = s3_server.config
    source = tmp_path / "src"
    source.mkdir()
    payload = os.urandom(12 * MB)
    (source / "big.bin").write_bytes(payload)
    parts: list[int] = []

    def count_part(params: dict[str, Any], **_: Any) -> None:
        parts.append(int(params["PartNumber"]))

    events = s3_client(s3).meta.events
    events.register("provide-client-params.s3.UploadPart", count_part)
    try:
        report = upload_dir(source, f"{bucket}/m", s3=s3, multipart_threshold=5 * MB)
    finally:
        events.unregister("provide-client-params.s3.UploadPart", count_part)
    assert (report.uploaded, report.bytes) == (1, 12 * MB)
    assert sorted(parts) == [1, 2, 3]  # 5 + 5 + 2 MB
    assert read_bytes(f"{bucket}/m/big.bin", s3=s3) == payload
    target = download_to(f"{bucket}/m/big.bin", tmp_path / "back.bin", s3=s3)
    assert target.read_bytes() == payload
    again = upload_dir(source, f"{bucket}/m", s3=s3, multipart_threshold=5 * MB)
    assert (again.uploaded, again.skipped) == (0, 1)


def test_data_survives_restart_and_outage_is_reported(
    s3_server: Any, bucket: str, tmp_path: Path
) -> None:
    s3 = s3_server.config
    write_bytes(f"{bucket}/keep/me.txt", b"still here", s3=s3)
    s3_server.stop()
    try:
        with pytest.raises(StorageError, match="cannot reach S3 endpoint"):
            read_bytes(f"{bucket}/keep/me.txt", s3=s3)
    finally:
        s3_server.start()
    assert read_bytes(f"{bucket}/keep/me.txt", s3=s3) == b"still here"
    assert [i.relative for i in list_objects(f"{bucket}/keep", s3=s3)] == ["me.txt"]


def test_start_fails_clearly_when_port_is_taken(s3_server: Any, tmp_path: Path) -> None:
    with pytest.raises(GenreopsError, match="already in use"):
        s3server.start_s3_server(tmp_path / "data", port=s3_server.port)


def test_fresh_server_on_its_own_data_dir(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "s3.log"
    process = s3server.start_s3_server(tmp_path / "data", port=port, log_path=log, verbose=True)
    try:
        config = s3server.s3_config(port=port)
        ensure_bucket("s3://fresh-bucket", s3=config)
        write_bytes("s3://fresh-bucket/x", b"1", s3=config)
    finally:
        s3server.stop_s3_server(process)
    assert process.poll() is not None
    assert (tmp_path / "data" / "fresh-bucket").is_dir()  # directory-backed
    assert "fresh-bucket" in log.read_text()


def test_missing_install_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(GenreopsError, match="make setup") as raised:
        s3server.find_s3_server_command(tmp_path)
    assert "GENREOPS_S3_SERVER_DIR" in str(raised.value)
    assert "npm ci --prefix" in str(raised.value)


def test_server_dir_setting_overrides_the_checkout(tmp_path: Path) -> None:
    """A wheel install has no tools/s3: the setting points at an npm install elsewhere."""
    from genreops.core.settings import Settings

    assert (
        s3server.server_dir(Settings(_env_file=None, use_stack_env=False)) == s3server.CHECKOUT_DIR
    )
    assert (
        s3server.server_dir(Settings(_env_file=None, use_stack_env=False, s3_server_dir=tmp_path))
        == tmp_path
    )


def test_a_public_feature_table_loads_from_s3_as_file_or_prefix(
    s3_server: Any, bucket: str
) -> None:
    """features_30_sec.csv as downloaded (generated here), uploaded to S3: by its URL and by
    its prefix; a prefix with two tables names both."""
    s3 = s3_server.config
    data = gtzan_public_frame(per_genre=5).to_csv(index=False).encode()
    write_bytes(f"{bucket}/gtzan/features_30_sec.csv", data, s3=s3)
    write_bytes(f"{bucket}/gtzan/genres_original/blues/x.csv", b"not looked into", s3=s3)
    by_file = load_feature_table(f"{bucket}/gtzan/features_30_sec.csv", s3=s3)
    by_prefix = load_feature_table(f"{bucket}/gtzan/", s3=s3)
    assert by_prefix.url == by_file.url == f"{bucket}/gtzan/features_30_sec.csv"
    assert by_prefix.digest == by_file.digest
    assert len(by_file.feature_names) == 57 and by_file.dropped_columns == ("length",)
    assert (by_file.label_column, by_file.id_column) == ("label", "filename")
    write_bytes(f"{bucket}/gtzan/features_3_sec.csv", data, s3=s3)
    with pytest.raises(TrainingError, match="2 candidate tables here, name one of them"):
        load_feature_table(f"{bucket}/gtzan", s3=s3)
    with pytest.raises(TrainingError, match="no feature table here"):
        load_feature_table(f"{bucket}/nothing", s3=s3)


def test_a_chunk_read_from_s3_fails_each_bad_clip_alone_in_order(
    s3_server: Any, bucket: str, tmp_path: Path
) -> None:
    """What a Dask worker does with a chunk of S3 clips: a clip that vanished after listing,
    one over the size limit and one that is no audio each fail alone with their reason; the
    good ones keep their order and the features of the same file read from disk."""
    import numpy as np

    from genreops.data.audio import load_audio
    from genreops.data.extraction import Chunk, ExtractOptions, extract_chunk, list_clips
    from genreops.data.features import extract_features
    from genreops.data.synth import render_corpus

    s3 = s3_server.config
    render_corpus(tmp_path / "c", per_genre=2, seconds=6, seed=11, genres=("blues", "rock"))
    (tmp_path / "c" / "manifest.json").unlink(missing_ok=True)
    (tmp_path / "c" / "rock" / "noise.wav").write_bytes(os.urandom(4000))
    (tmp_path / "c" / "rock" / "huge.wav").write_bytes(b"RIFF" + bytes(3 * MB))
    (tmp_path / "c" / "rock" / "gone.wav").write_bytes(b"RIFF")
    upload_dir(tmp_path / "c", f"{bucket}/c", s3=s3)
    clips = list_clips(f"{bucket}/c", s3=s3)
    s3_client(s3).delete_object(Bucket=bucket.removeprefix("s3://"), Key="c/rock/gone.wav")

    options = ExtractOptions(window_seconds=6.0, min_seconds=1.0, max_file_bytes=2 * MB)
    result = extract_chunk(Chunk("c", tuple(clips)), options, s3=s3)
    reasons = {f.clip_id: f.reason for f in result.failures}
    assert reasons == {
        "rock/gone.wav": "unreadable", "rock/huge.wav": "too_large", "rock/noise.wav": "not_audio"
    }, result.failures  # fmt: skip
    assert all(f.message.startswith(f.clip_id) for f in result.failures)
    good = [c for c in clips if c.clip_id not in reasons]
    assert result.clip_ids == [c.clip_id for c in good] and len(good) == 4
    first = load_audio(tmp_path / "c" / good[0].clip_id, duration=6.0, min_seconds=1.0)
    np.testing.assert_allclose(result.features[0], extract_features(first), rtol=1e-5)
