"""Which models the preprocessor's features can serve: any subset of the schema's columns, never
a retired schema whose names now mean other quantities (genreops.data.features.serving_columns)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genreops.core.errors import SchemaError
from genreops.data.feature_table import load_feature_table
from genreops.data.features import (
    FEATURE_NAMES,
    RETIRED_SCHEMAS,
    SCHEMA_VERSION,
    retired_schema_version,
    schema_hash,
    serving_columns,
)
from helpers import GTZAN_FEATURE_NAMES, synthetic_feature_frame

pytestmark = pytest.mark.unit


def _stats(base: str) -> list[str]:
    return [f"{base}_mean", f"{base}_var"]


# Schema v1 as genreops 0.1 extracted it: the public table's 57 columns, then its extras.
V1_NAMES = [
    *GTZAN_FEATURE_NAMES,
    *(n for i in range(1, 8) for n in _stats(f"spectral_contrast{i}")),
    *_stats("spectral_flatness"),
    *_stats("onset_strength"),
    *(f"chroma_rank{i}_mean" for i in range(1, 13)),
]


def test_the_retired_hash_is_schema_v1s() -> None:
    assert SCHEMA_VERSION != "1"
    assert schema_hash("1", V1_NAMES) == RETIRED_SCHEMAS["1"]


def test_a_subset_in_any_order_maps_to_positions_in_the_full_vector() -> None:
    public = list(FEATURE_NAMES[:57])
    wanted = [public[18], public[0], public[-1]]  # tempo, chroma_stft_mean, mfcc20_var
    positions = serving_columns(wanted, schema_version="custom")
    assert [FEATURE_NAMES[i] for i in positions] == wanted
    assert list(serving_columns(FEATURE_NAMES, schema_version=SCHEMA_VERSION)) == list(
        range(len(FEATURE_NAMES))
    )


def test_columns_the_preprocessor_does_not_compute_are_all_named() -> None:
    with pytest.raises(SchemaError) as refused:
        serving_columns(
            ["rms_mean", "length", "loudness_lufs"], schema_version="custom", source="svc run 7"
        )
    message = str(refused.value)
    assert message.startswith("svc run 7 needs 2 feature column(s)")
    assert "'length', 'loudness_lufs'" in message and "'rms_mean'" not in message
    with pytest.raises(SchemaError, match="uses no feature columns"):
        serving_columns([], schema_version="custom")


def test_a_retired_schema_is_refused_with_the_advice_to_retrain() -> None:
    with pytest.raises(SchemaError, match=r"schema v1, which is retired .* retrain it"):
        serving_columns(FEATURE_NAMES[:57], schema_version="1")
    # the same names on today's schema or a custom table are fine
    assert retired_schema_version(SCHEMA_VERSION, V1_NAMES) is None
    assert retired_schema_version("custom", V1_NAMES[:57]) is None
    assert retired_schema_version("custom", V1_NAMES) == "1"


def test_a_v1_table_exported_without_its_metadata_is_still_recognised(tmp_path: Path) -> None:
    frame = synthetic_feature_frame(per_genre=4, names=tuple(V1_NAMES))
    frame.to_csv(tmp_path / "old.csv", index=False)
    table = load_feature_table(str(tmp_path / "old.csv"))
    assert table.schema_version == "1" and table.schema_hash == RETIRED_SCHEMAS["1"]
    with pytest.raises(SchemaError, match="retired"):
        serving_columns(table.feature_names, schema_version=table.schema_version)
    np.testing.assert_array_equal(table.features.columns, V1_NAMES)
