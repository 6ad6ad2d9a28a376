"""Extraction stage logic on local folders: chunk identity, per-clip failures, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from genreops.core.errors import ExtractionError
from genreops.data import extraction
from genreops.data.datasets import discover_labeled
from genreops.data.extraction import ExtractOptions
from genreops.data.features import FEATURE_NAMES

pytestmark = pytest.mark.unit

SR = 22050
OPTIONS = ExtractOptions(window_seconds=6.0, min_seconds=2.0)


def _tone(path: Path, freq: float, seconds: float = 3.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    noise = np.random.default_rng(int(freq)).normal(0, 0.05, t.size)
    sf.write(path, (0.4 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32), SR)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    for i, genre in enumerate(("blues", "jazz", "rock")):
        for j in range(3):
            _tone(root / genre / f"{genre}.{j:05d}.wav", 110.0 * (i + 1) + 20 * j)
    (root / "jazz" / "broken.wav").write_bytes(b"definitely not audio")
    return root


def test_chunk_ids_depend_on_content_not_listing_order(corpus: Path) -> None:
    clips = discover_labeled(str(corpus))
    first = extraction.plan_chunks(clips, 4, OPTIONS)
    again = extraction.plan_chunks(list(reversed(clips)), 4, OPTIONS)
    assert [c.chunk_id for c in first] == [c.chunk_id for c in again]
    assert sum(len(c.clips) for c in first) == len(clips) == 10
    other_options = extraction.plan_chunks(clips, 4, ExtractOptions(window_seconds=5.0))
    assert {c.chunk_id for c in first}.isdisjoint({c.chunk_id for c in other_options})


def test_a_bad_clip_becomes_a_failure_and_the_rest_is_extracted(corpus: Path) -> None:
    clips = discover_labeled(str(corpus))
    (chunk,) = extraction.plan_chunks(clips, 100, OPTIONS)
    result = extraction.extract_chunk(chunk, OPTIONS)
    assert len(result.clip_ids) == 9
    assert result.features.shape == (9, len(FEATURE_NAMES))
    assert np.isfinite(result.features).all()
    (failure,) = result.failures
    assert failure.clip_id == "jazz/broken.wav"
    assert "jazz/broken.wav" in failure.message


def test_finalize_writes_outputs_and_enforces_the_failed_share(
    corpus: Path, tmp_path: Path
) -> None:
    clips = discover_labeled(str(corpus))
    chunks = extraction.plan_chunks(clips, 4, OPTIONS)
    out = str(tmp_path / "out")
    results = [extraction.extract_or_reuse_chunk(c, OPTIONS, out) for c in chunks]
    summary = extraction.finalize(
        input_url=str(corpus),
        output_url=out,
        clips=clips,
        results=results,
        options=OPTIONS,
        max_failed_share=0.5,
    )
    table = pd.read_parquet(summary.table_url)
    assert list(table.columns[:2]) == ["clip_id", "genre"] and len(table) == 9
    manifest = json.loads(Path(summary.manifest_url).read_text())
    assert manifest["counts"]["per_genre"] == {"blues": 3, "jazz": 3, "rock": 3}
    assert [f["clip_id"] for f in manifest["failures"]] == ["jazz/broken.wav"]

    reused = [extraction.extract_or_reuse_chunk(c, OPTIONS, out) for c in chunks]
    assert all(r.reused for r in reused)
    np.testing.assert_array_equal(
        np.vstack([r.features for r in reused]), np.vstack([r.features for r in results])
    )

    with pytest.raises(ExtractionError, match=r"1 of 10 clips failed"):
        extraction.finalize(
            input_url=str(corpus),
            output_url=out,
            clips=clips,
            results=results,
            options=OPTIONS,
            max_failed_share=0.05,
        )


def test_empty_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExtractionError, match="no labeled audio"):
        extraction.list_clips(str(tmp_path))
