"""Labeled-dataset discovery (GTZAN layout) and the stable stratified split."""

from __future__ import annotations

import logging
import random
from collections import Counter
from pathlib import Path

import pytest

from genreops.core.errors import StorageError
from genreops.data.datasets import LabeledClip, discover_labeled, listing_hash, stratified_split

pytestmark = pytest.mark.unit


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "gtzan"
    for genre in ("blues", "Rock", "jazz"):
        (root / genre).mkdir(parents=True)
    (root / "blues" / "blues.00001.wav").write_bytes(b"w" * 10)
    (root / "blues" / "blues.00000.flac").write_bytes(b"f" * 20)
    (root / "Rock" / "rock.00000.MP3").write_bytes(b"m" * 30)
    (root / "jazz" / "jazz.00000.m4a").write_bytes(b"a" * 40)
    (root / "jazz" / "cover.jpg").write_bytes(b"jpg")  # not audio: ignored
    (root / "jazz" / ".hidden.wav").write_bytes(b"h")  # hidden: ignored
    (root / ".cache").mkdir()
    (root / ".cache" / "x.wav").write_bytes(b"h")  # hidden folder: ignored
    (root / "stray.wav").write_bytes(b"s")  # no genre folder: skipped
    (root / "jazz" / "live").mkdir()
    (root / "jazz" / "live" / "deep.wav").write_bytes(b"d")  # too deep: skipped
    (root / "README.md").write_bytes(b"readme")
    return root


def test_discover_gtzan_layout(corpus: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="genreops.data.datasets"):
        clips = discover_labeled(str(corpus))
    assert [c.clip_id for c in clips] == [
        "Rock/rock.00000.MP3",
        "blues/blues.00000.flac",
        "blues/blues.00001.wav",
        "jazz/jazz.00000.m4a",
    ]
    assert [c.genre for c in clips] == ["rock", "blues", "blues", "jazz"]
    assert [c.size for c in clips] == [30, 20, 10, 40]
    assert Path(clips[2].url).read_bytes() == b"w" * 10
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 2 audio file(s)" in warnings[0]
    assert "jazz/live/deep.wav" in warnings[0] and "stray.wav" in warnings[0]
    assert any("ignored 2 non-audio" in r.getMessage() for r in caplog.records)


def test_discover_respects_extensions_and_file_urls(corpus: Path) -> None:
    clips = discover_labeled(corpus.as_uri(), extensions=(".wav",))
    assert [c.clip_id for c in clips] == ["blues/blues.00001.wav"]


def test_discover_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="absent"):
        discover_labeled(str(tmp_path / "absent"))


def test_discover_fingerprint_tracks_content(corpus: Path) -> None:
    before = {c.clip_id: c.fingerprint for c in discover_labeled(str(corpus))}
    (corpus / "jazz" / "jazz.00000.m4a").write_bytes(b"changed, longer content")
    after = {c.clip_id: c.fingerprint for c in discover_labeled(str(corpus))}
    assert after["jazz/jazz.00000.m4a"] != before["jazz/jazz.00000.m4a"]
    assert after["blues/blues.00001.wav"] == before["blues/blues.00001.wav"]


def _dataset(per_genre: dict[str, int]) -> tuple[list[str], list[str]]:
    ids, labels = [], []
    for genre, n in per_genre.items():
        for i in range(n):
            ids.append(f"{genre}/{genre}.{i:05d}.wav")
            labels.append(genre)
    return ids, labels


def test_split_is_deterministic_and_order_independent() -> None:
    ids, labels = _dataset({"blues": 40, "rock": 25, "jazz": 7})
    split = stratified_split(ids, labels, seed=3)
    pairs = list(zip(ids, labels, strict=True))
    random.Random(0).shuffle(pairs)
    shuffled = stratified_split([p[0] for p in pairs], [p[1] for p in pairs], seed=3)
    assert shuffled == split
    assert set(split) == set(ids)
    assert stratified_split(ids, labels, seed=4) != split


def test_split_is_stratified_with_full_coverage() -> None:
    ids, labels = _dataset({"big": 100, "small": 3, "mid": 20})
    split = stratified_split(ids, labels, val=0.15, test=0.15)
    counts = {g: Counter(split[i] for i, lab in zip(ids, labels, strict=True) if lab == g)
              for g in ("big", "small", "mid")}  # fmt: skip
    assert counts["big"] == {"train": 70, "val": 15, "test": 15}
    assert counts["small"] == {"train": 1, "val": 1, "test": 1}
    assert counts["mid"] == {"train": 14, "val": 3, "test": 3}


def test_split_tiny_genres_and_zero_shares() -> None:
    ids, labels = _dataset({"one": 1, "two": 2, "many": 10})
    split = stratified_split(ids, labels)
    assert split["one/one.00000.wav"] == "train"
    assert {split[i] for i in ids if i.startswith("two/")} == {"train"}
    no_val = stratified_split(ids, labels, val=0.0, test=0.2)
    assert "val" not in no_val.values()
    assert Counter(v for k, v in no_val.items() if k.startswith("many/"))["test"] == 2


def test_adding_a_clip_moves_at_most_one_other() -> None:
    ids, labels = _dataset({"blues": 60, "rock": 60})
    before = stratified_split(ids, labels, seed=1)
    after = stratified_split([*ids, "blues/new.wav"], [*labels, "blues"], seed=1)
    moved = [i for i in ids if before[i] != after[i]]
    assert len(moved) <= 1
    assert all(i.startswith("blues/") for i in moved)


def test_split_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="labels"):
        stratified_split(["a", "b"], ["x"])
    with pytest.raises(ValueError, match="duplicate"):
        stratified_split(["a", "a"], ["x", "x"])
    with pytest.raises(ValueError, match="sum to less than 1"):
        stratified_split(["a"], ["x"], val=0.5, test=0.5)


def test_listing_hash_is_order_independent_and_content_sensitive() -> None:
    clips = [
        LabeledClip("u1", "blues/a.wav", "blues", 10, "f1"),
        LabeledClip("u2", "rock/b.wav", "rock", 20, "f2"),
    ]
    digest = listing_hash(clips)
    assert listing_hash(reversed(clips)) == digest
    changed = [clips[0], LabeledClip("u2", "rock/b.wav", "rock", 20, "f3")]
    assert listing_hash(changed) != digest
    assert listing_hash([]) != digest
