"""Feature tables: what is accepted, what is refused (and how the refusal reads), the split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from genreops.core.errors import SchemaError, TrainingError
from genreops.data.feature_table import CUSTOM_SCHEMA_VERSION, load_feature_table
from genreops.data.features import SCHEMA_HASH, SCHEMA_VERSION
from helpers import GTZAN_FEATURE_NAMES, gtzan_public_frame

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
    frame["artist"] = "x"
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(SchemaError, match=r"feature column 'artist' \(.*\) is not numeric"):
        load_feature_table(str(tmp_path / "t.csv"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: f.drop(columns=["genre"]),
            r"no label column \(looked for 'genre', 'label'; columns: 'clip_id', ",
        ),
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


# --- the public GTZAN tables, and tables with other column names ---------------------------


def test_the_public_gtzan_table_loads_as_downloaded(tmp_path: Path) -> None:
    """features_30_sec.csv: filename -> ids, label -> genres, length is never a feature."""
    frame = gtzan_public_frame(per_genre=10)
    frame["label"] = frame["label"].str.pad(8)  # stray spaces around a label are stripped
    frame.to_csv(tmp_path / "features_30_sec.csv", index=False)
    table = load_feature_table(str(tmp_path / "features_30_sec.csv"))
    assert table.feature_names == list(GTZAN_FEATURE_NAMES) and len(table.feature_names) == 57
    assert "length" not in table.feature_names and table.dropped_columns == ("length",)
    assert (table.label_column, table.id_column) == ("label", "filename")
    assert table.genres == ["blues", "classical", "metal", "pop"]
    assert table.clip_ids.iloc[0] == "blues.00000.wav"
    assert table.groups is None and table.split_source == "stratified(seed=0)"  # one row a song
    assert table.schema_version == CUSTOM_SCHEMA_VERSION and table.schema_hash != SCHEMA_HASH
    assert table.columns_read == {
        "label_column": "label",
        "id_column": "filename",
        "dropped_columns": "length",
        "split_groups": "-",
    }
    assert "label 'label'; ids 'filename'; 57 features; not features: 'length'" in (
        table.describe_columns()
    )
    assert list(table.frame().columns[:3]) == ["clip_id", "genre", "split"]  # our names out
    # the same table as Parquet, or alone in a folder, reads the same
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    assert load_feature_table(str(tmp_path / "t.parquet")).feature_names == table.feature_names
    (tmp_path / "t.parquet").unlink()
    assert load_feature_table(str(tmp_path)).url == str(tmp_path / "features_30_sec.csv")


def test_the_3_second_table_keeps_each_song_in_one_split(tmp_path: Path) -> None:
    gtzan_public_frame(per_genre=8, segments=10).to_csv(tmp_path / "t.csv", index=False)
    table = load_feature_table(str(tmp_path / "t.csv"))
    assert table.groups is not None and table.groups.nunique() == 32
    assert table.groups.iloc[13] == "blues.00001"
    per_song = table.split.groupby(table.groups.to_numpy()).nunique()
    assert (per_song == 1).all()  # no song's segments on both sides of a split
    assert set(table.split) == {"train", "val", "test"}
    assert (
        "grouped by song" in table.split_source
        and "song, from the 'filename' ids: 32 groups" in (table.describe_columns())
    )


def test_a_group_column_keeps_its_rows_together_and_is_not_a_feature(tmp_path: Path) -> None:
    frame = gtzan_public_frame(per_genre=9)
    frame.insert(1, "artist", [f"artist-{i // 3}" for i in range(len(frame))])
    frame.to_csv(tmp_path / "t.csv", index=False)
    table = load_feature_table(str(tmp_path / "t.csv"), group_column="artist")
    assert "artist" not in table.feature_names and table.columns_read["split_groups"] == (
        "column 'artist'"
    )
    assert table.groups is not None
    assert (table.split.groupby(table.groups.to_numpy()).nunique() == 1).all()


def test_a_saved_split_that_splits_a_song_is_refused(tmp_path: Path) -> None:
    frame = gtzan_public_frame(per_genre=4, segments=3)
    frame.to_csv(tmp_path / "t.csv", index=False)
    split = ["train", "val", "test"] * (len(frame) // 3)  # every song across all three
    pd.DataFrame({"clip_id": frame["filename"], "split": split}).to_csv(
        tmp_path / "split.csv", index=False
    )
    with pytest.raises(TrainingError, match=r"group 'blues.00000' .* more than one split"):
        load_feature_table(str(tmp_path / "t.csv"))


def test_other_label_and_id_names_are_given_as_options(tmp_path: Path) -> None:
    frame = gtzan_public_frame(per_genre=6).rename(columns={"label": "style", "filename": "track"})
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(SchemaError, match=r"no label column \(looked for 'genre', 'label';"):
        load_feature_table(str(tmp_path / "t.csv"))
    with pytest.raises(SchemaError, match=r"no label column 'Style' \(columns: 'track', "):
        load_feature_table(str(tmp_path / "t.csv"), label_column="Style")
    table = load_feature_table(str(tmp_path / "t.csv"), label_column="style", id_column="track")
    assert (table.label_column, table.id_column) == ("style", "track")
    assert table.feature_names == list(GTZAN_FEATURE_NAMES)
    # the same bytes read with other roles are another training set: another digest
    dropped = load_feature_table(
        str(tmp_path / "t.csv"), label_column="style", drop_columns=["track"]
    )
    assert dropped.id_column is None and dropped.dropped_columns == ("track", "length")
    assert dropped.digest != table.digest


def test_our_own_tables_keep_their_digest(tmp_path: Path, feature_frame: Frame) -> None:
    import hashlib

    feature_frame().to_parquet(tmp_path / "t.parquet", index=False)
    table = load_feature_table(str(tmp_path / "t.parquet"))
    data = (tmp_path / "t.parquet").read_bytes()
    assert table.digest == hashlib.sha256(data).hexdigest()[:16]  # studies from before still match
    assert table.columns_read["dropped_columns"] == "-"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda f: f.reset_index(names="Unnamed: 0"), "'Unnamed: 0'"),  # to_csv(index=True)
        (lambda f: f.assign(genre=f["label"].factorize()[0]), "'genre'"),  # a coded label
        (lambda f: f.assign(fold=1), "'fold'"),
    ],
)
def test_a_numeric_column_named_like_metadata_is_refused_until_dropped(
    tmp_path: Path, change: Callable[[pd.DataFrame], pd.DataFrame], named: str
) -> None:
    change(gtzan_public_frame(per_genre=6)).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(SchemaError, match=f"column {named} looks like metadata") as error:
        load_feature_table(str(tmp_path / "t.csv"), label_column="label")
    assert "drop_columns (CLI: --drop-column)" in str(error.value)
    table = load_feature_table(
        str(tmp_path / "t.csv"), label_column="label", drop_columns=[named.strip("'")]
    )
    assert named.strip("'") in table.dropped_columns and len(table.feature_names) == 57


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (
            lambda f: f.assign(filename=f["filename"].where(f.index != 7, "blues.00003.wav")),
            {},
            r"'filename' 'blues.00003.wav' appears more than once \(1 duplicate\(s\), first "
            r"again at row 7\)",
        ),
        (
            lambda f: f.assign(label=f["label"].where(f.index != 4, "  ")),
            {},
            r"1 row\(s\) have no 'label' \(first at row 4\)",
        ),
        (lambda f: f, {"drop_columns": ["nope"]}, "no column 'nope' to drop"),
        (lambda f: f, {"id_column": "label"}, "column 'label' is given more than one role"),
        (lambda f: f.assign(tempo=float("nan")), {}, "'tempo' has 24 missing"),
    ],
)
def test_public_table_faults_name_the_column_and_row(
    tmp_path: Path,
    change: Callable[[pd.DataFrame], pd.DataFrame],
    kwargs: dict[str, object],
    message: str,
) -> None:
    change(gtzan_public_frame(per_genre=6)).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(SchemaError, match=message):
        load_feature_table(str(tmp_path / "t.csv"), **kwargs)


def test_a_folder_with_several_tables_lists_them(tmp_path: Path, feature_frame: Frame) -> None:
    frame = gtzan_public_frame(per_genre=4)
    frame.to_csv(tmp_path / "features_30_sec.csv", index=False)
    frame.to_csv(tmp_path / "features_3_sec.csv", index=False)
    (tmp_path / "genres_original").mkdir()  # what the download holds besides: not looked into
    frame.to_csv(tmp_path / "genres_original" / "deep.csv", index=False)
    with pytest.raises(TrainingError, match=r"2 candidate tables here, name one of them: ") as e:
        load_feature_table(str(tmp_path))
    assert "features_30_sec.csv" in str(e.value) and "features_3_sec.csv" in str(e.value)
    assert "deep.csv" not in str(e.value)
    # extraction's own table wins, and its split.csv is never taken for a table
    feature_frame().to_parquet(tmp_path / "features.parquet", index=False)
    assert load_feature_table(str(tmp_path)).url.endswith("features.parquet")
    (tmp_path / "features.parquet").unlink()
    (tmp_path / "features_3_sec.csv").unlink()
    split = ["train", "val", "test", "train"] * 4
    pd.DataFrame({"clip_id": frame["filename"], "split": split}).to_csv(
        tmp_path / "split.csv", index=False
    )
    table = load_feature_table(str(tmp_path))
    assert table.url.endswith("features_30_sec.csv")
    assert table.split.tolist() == split and table.split_source.endswith("split.csv")
