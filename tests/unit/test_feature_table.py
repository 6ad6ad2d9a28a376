"""Feature tables: what is accepted, what is refused (and how the refusal reads), the split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from genreops.errors import SchemaError, TrainingError
from genreops.feature_table import load_feature_table
from genreops.features import SCHEMA_HASH, SCHEMA_VERSION

pytestmark = pytest.mark.unit
Frame = Callable[..., pd.DataFrame]


def test_parquet_and_csv_load_to_the_same_table(tmp_path: Path, feature_frame: Frame) -> None:
    frame = feature_frame()
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    frame.to_csv(tmp_path / "t.csv", index=False)
    from_parquet = load_feature_table(str(tmp_path / "t.parquet"))
    from_csv = load_feature_table(str(tmp_path / "t.csv"))
    assert from_parquet.feature_names == from_csv.feature_names
    pd.testing.assert_frame_equal(from_parquet.features, from_csv.features, atol=1e-6)
    assert from_parquet.split.tolist() == from_csv.split.tolist()
    # our own features are recognised as the current schema even without Parquet metadata
    assert from_csv.schema_version == SCHEMA_VERSION and from_csv.schema_hash == SCHEMA_HASH


def test_a_non_numeric_feature_column_is_refused_by_name(
    tmp_path: Path, feature_frame: Frame
) -> None:
    frame = feature_frame()
    frame["filename"] = "x.wav"
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(SchemaError, match=r"feature column 'filename' \(.*\) is not numeric"):
        load_feature_table(str(tmp_path / "t.csv"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["genre"]), "no 'genre' label column"),
        (lambda f: f.assign(genre=f["genre"].where(f.index != 3, None)), "have no 'genre'"),
        (lambda f: f.assign(clip_id="same"), "'clip_id' 'same' appears more than once"),
        (lambda f: f.assign(genre="rock"), "only one genre"),
        (lambda f: f[["clip_id", "genre"]], "no feature columns"),
        (lambda f: f.iloc[:0], "no rows"),
    ],
)
def test_malformed_tables_are_refused_with_the_reason(
    tmp_path: Path,
    feature_frame: Frame,
    change: Callable[[pd.DataFrame], pd.DataFrame],
    message: str,
) -> None:
    change(feature_frame()).to_parquet(tmp_path / "t.parquet", index=False)
    with pytest.raises((SchemaError, TrainingError), match=message):
        load_feature_table(str(tmp_path / "t.parquet"))


def test_missing_values_name_the_column_and_row(tmp_path: Path, feature_frame: Frame) -> None:
    frame = feature_frame()
    frame.loc[5, "tempo"] = float("inf")
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    with pytest.raises(
        SchemaError, match=r"'tempo' has 1 missing or infinite value\(s\) \(first at row 5\)"
    ):
        load_feature_table(str(tmp_path / "t.parquet"))


def test_split_from_extraction_is_reused(tmp_path: Path, feature_frame: Frame) -> None:
    frame = feature_frame(per_genre=5)
    frame.to_parquet(tmp_path / "features.parquet", index=False)
    wanted = ["train", "train", "val", "test", "val"] * (len(frame) // 5)
    pd.DataFrame({"clip_id": frame["clip_id"], "split": wanted}).to_csv(
        tmp_path / "split.csv", index=False
    )
    (tmp_path / "manifest.json").write_text('{"counts": {"failed": 0}}')
    table = load_feature_table(str(tmp_path))  # the folder `genreops extract` wrote
    assert table.url.endswith("features.parquet")
    assert table.split.tolist() == wanted
    assert table.split_source.endswith("split.csv")
    assert table.manifest == {"counts": {"failed": 0}}


def test_a_clip_missing_from_the_split_file_is_named(tmp_path: Path, feature_frame: Frame) -> None:
    frame = feature_frame()
    frame.to_parquet(tmp_path / "features.parquet", index=False)
    pd.DataFrame({"clip_id": frame["clip_id"][1:], "split": "train"}).to_csv(
        tmp_path / "split.csv", index=False
    )
    with pytest.raises(TrainingError, match=r"blues/blues.00000.wav"):
        load_feature_table(str(tmp_path))


def test_without_a_split_file_the_split_is_stratified_and_stable(
    tmp_path: Path, feature_frame: Frame
) -> None:
    feature_frame().drop(columns=["clip_id"]).to_parquet(tmp_path / "t.parquet", index=False)
    first = load_feature_table(str(tmp_path / "t.parquet"), split_seed=3)
    second = load_feature_table(str(tmp_path / "t.parquet"), split_seed=3)
    assert first.split.tolist() == second.split.tolist()
    counts = pd.crosstab(first.labels, first.split)
    assert (counts[["train", "val", "test"]] >= 1).all().all()  # every genre in every split
    assert first.schema_hash == SCHEMA_HASH


def test_a_folder_without_a_table_says_what_it_expected(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="no feature table here"):
        load_feature_table(str(tmp_path))


def test_a_custom_feature_set_gets_its_own_schema_hash(
    tmp_path: Path, feature_frame: Frame
) -> None:
    feature_frame(names=("a", "b", "c")).to_csv(tmp_path / "t.csv", index=False)
    table = load_feature_table(str(tmp_path / "t.csv"))
    assert table.schema_version == "custom"
    assert table.schema_hash != SCHEMA_HASH
    assert table.feature_names == ["a", "b", "c"]
