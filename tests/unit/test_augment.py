"""The table retraining trains on: the base feature table plus the labeled clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from genreops.core.errors import SchemaError
from genreops.data.augment import augment_table
from genreops.data.feature_table import load_feature_table
from genreops.data.features import FEATURE_NAMES

pytestmark = pytest.mark.unit


def _clip(path: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * rng.standard_normal(22050 * 6)).astype(np.float32), 22050)
    return str(path)


def _base(path: Path, clip_ids: list[str]) -> str:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(len(clip_ids), len(FEATURE_NAMES))),
                         columns=list(FEATURE_NAMES)).astype(np.float32)  # fmt: skip
    frame.insert(0, "genre", ["rock", "jazz"] * (len(clip_ids) // 2))
    frame.insert(0, "clip_id", clip_ids)
    frame.to_parquet(path, index=False)
    return str(path)


def test_labeled_clips_are_extracted_and_added_and_none_is_dropped_silently(
    tmp_path: Path,
) -> None:
    served = _clip(tmp_path / "served" / "a.wav", 1)
    relabeled = _clip(tmp_path / "served" / "b.wav", 2)
    base = _base(tmp_path / "base.parquet", [*(f"rock/{n}.wav" for n in range(19)), relabeled])
    labels = [
        (served, "jazz"),
        (relabeled, "rock"),  # in the base as jazz: the newer label wins
        (str(tmp_path / "gone.wav"), "rock"),
        (_clip(tmp_path / "served" / "c.wav", 3), "polka"),
    ]
    grown = augment_table(base, labels, str(tmp_path / "grown"))
    assert (grown.base_rows, grown.added, grown.replaced) == (20, 1, 1)
    assert sorted(line.split(":")[0] for line in grown.left_out) == sorted(
        [str(tmp_path / "gone.wav"), str(tmp_path / "served" / "c.wav")]
    )
    assert "'polka' is not one of the table's (jazz, rock)" in " ".join(grown.left_out)
    frame = pd.read_parquet(grown.url)
    assert len(frame) == 21 and frame.columns.tolist() == ["clip_id", "genre", *FEATURE_NAMES]
    assert frame.set_index("clip_id").loc[relabeled, "genre"] == "rock"
    assert frame.set_index("clip_id").loc[served, "genre"] == "jazz"
    manifest = json.loads((tmp_path / "grown" / "augment.json").read_text())
    assert manifest["rows"] == 21 and manifest["base_url"] == base
    table = load_feature_table(grown.url)  # what training reads
    assert len(table.frame()) == 21


def test_a_table_that_cannot_take_new_clips_is_refused_naming_why(tmp_path: Path) -> None:
    pd.DataFrame({"filename": ["a.wav"], "label": ["rock"], "tempo": [120.0]}).to_csv(
        tmp_path / "features_30_sec.csv", index=False
    )
    with pytest.raises(SchemaError, match="cannot take new clips"):
        augment_table(str(tmp_path / "features_30_sec.csv"), [], str(tmp_path / "out"))
    pd.DataFrame({"clip_id": ["a"], "genre": ["rock"], "x": [1.0]}).to_parquet(
        tmp_path / "other.parquet"
    )
    with pytest.raises(SchemaError, match="not a feature table of this schema"):
        augment_table(str(tmp_path / "other.parquet"), [], str(tmp_path / "out"))
