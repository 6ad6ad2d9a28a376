"""Feature tables for training: load, validate and split any table in the documented shape.

A table has a ``genre`` label column, an optional ``clip_id`` column and numeric feature
columns, nothing else; it is Parquet or CSV, local or on S3. Next to a table written by
``genreops extract`` lie ``split.csv`` and ``manifest.json``: the split is reused so training
validates on the clips extraction set aside, and the manifest travels with the model.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from genreops.datasets import stratified_split
from genreops.errors import GenreopsError, SchemaError, TrainingError
from genreops.features import FEATURE_NAMES, SCHEMA_VERSION, retired_schema_version, schema_hash
from genreops.storage import S3Config, exists, join_url, read_bytes

LABEL_COLUMN = "genre"
ID_COLUMN = "clip_id"
SPLITS = ("train", "val", "test")
TABLE_FILE = "features.parquet"  # what ``genreops extract`` writes
SPLIT_FILE = "split.csv"
MANIFEST_FILE = "manifest.json"
CUSTOM_SCHEMA_VERSION = "custom"
MAX_TABLE_BYTES = 2 * 1024**3

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureTable:
    """A validated table: features in column order, labels, ids and a train/val/test split."""

    url: str
    features: pd.DataFrame
    labels: pd.Series
    clip_ids: pd.Series
    split: pd.Series
    split_source: str
    schema_version: str
    schema_hash: str
    digest: str
    manifest: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def feature_names(self) -> list[str]:
        return [str(c) for c in self.features.columns]

    @property
    def genres(self) -> list[str]:
        return sorted(self.labels.unique().tolist())

    def part(self, *names: str) -> tuple[pd.DataFrame, pd.Series]:
        """Features and labels of the rows in the named splits, in table order."""
        mask = self.split.isin(names).to_numpy()
        return self.features[mask], self.labels[mask]

    def frame(self) -> pd.DataFrame:
        """The table as one frame (ids, label, split, features), e.g. to log as a dataset."""
        head = pd.DataFrame(
            {ID_COLUMN: self.clip_ids, LABEL_COLUMN: self.labels, "split": self.split}
        )
        return pd.concat([head, self.features], axis=1)


def resolve_table_url(url: str, *, s3: S3Config | None = None) -> str:
    """A table file as given, or ``features.parquet`` inside a folder/prefix from extraction."""
    if url.lower().endswith((".parquet", ".pq", ".csv")):
        return url
    candidate = join_url(url, TABLE_FILE)
    if exists(candidate, s3=s3):
        return candidate
    raise TrainingError(
        f"{url}: no feature table here (expected a .parquet/.csv file or a folder with "
        f"{TABLE_FILE}, as written by `genreops extract`)"
    )


def _sibling(url: str, name: str) -> str:
    return f"{url.rsplit('/', 1)[0]}/{name}" if "/" in url else name


def _read_frame(url: str, data: bytes) -> tuple[pd.DataFrame, dict[bytes, bytes]]:
    try:
        if url.lower().endswith(".csv"):
            frame = pd.read_csv(
                io.BytesIO(data), dtype={LABEL_COLUMN: "string", ID_COLUMN: "string"}
            )
            return frame, {}
        arrow = pq.read_table(io.BytesIO(data))
        return arrow.to_pandas(), dict(arrow.schema.metadata or {})
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise SchemaError(f"{url}: not a readable table ({error})") from error


def _check_columns(url: str, frame: pd.DataFrame) -> list[str]:
    """Feature column names; every column that is neither label, id nor numeric is named."""
    if LABEL_COLUMN not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:8])) + (", ..." if len(frame.columns) > 8 else "")
        raise SchemaError(f"{url}: no {LABEL_COLUMN!r} label column (columns: {shown})")
    names = [c for c in frame.columns if c not in (LABEL_COLUMN, ID_COLUMN)]
    if not names:
        raise SchemaError(f"{url}: no feature columns besides {LABEL_COLUMN!r}")
    bad = [
        f"{c!r} ({frame[c].dtype})"
        for c in names
        if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
    ]
    if bad:
        raise SchemaError(
            f"{url}: feature column {bad[0]} is not numeric"
            + (
                f" (nor are {', '.join(bad[1:4])}{' ...' if len(bad) > 4 else ''})"
                if bad[1:]
                else ""
            )
            + f"; a table holds {LABEL_COLUMN!r}, optional {ID_COLUMN!r} and numeric features only"
        )
    for name in names:
        values = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        bad_rows = np.flatnonzero(~np.isfinite(values))
        if bad_rows.size:
            raise SchemaError(
                f"{url}: feature column {name!r} has {bad_rows.size} missing or infinite "
                f"value(s) (first at row {int(bad_rows[0])})"
            )
    return [str(c) for c in names]


def _labels(url: str, frame: pd.DataFrame) -> pd.Series:
    labels = frame[LABEL_COLUMN].astype("string").str.strip()
    empty = np.flatnonzero((labels.isna() | (labels == "")).to_numpy())
    if empty.size:
        raise SchemaError(
            f"{url}: {empty.size} row(s) have no {LABEL_COLUMN!r} (first at row {int(empty[0])})"
        )
    return labels.astype(str).reset_index(drop=True)


def _clip_ids(url: str, frame: pd.DataFrame) -> pd.Series:
    if ID_COLUMN not in frame.columns:
        return pd.Series([f"row-{i}" for i in range(len(frame))], dtype=object)
    ids = frame[ID_COLUMN].astype("string")
    if ids.isna().any():
        raise SchemaError(f"{url}: {int(ids.isna().sum())} row(s) have no {ID_COLUMN!r}")
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise SchemaError(
            f"{url}: {ID_COLUMN!r} {duplicated.iloc[0]!r} appears more than once "
            f"({len(duplicated)} duplicate(s))"
        )
    return ids.astype(str).reset_index(drop=True)


def _schema(names: list[str], metadata: dict[bytes, bytes]) -> tuple[str, str]:
    version = metadata.get(b"genreops.schema_version", b"").decode() or (
        SCHEMA_VERSION if names == list(FEATURE_NAMES) else CUSTOM_SCHEMA_VERSION
    )
    # an old extraction table saved without its metadata (a CSV export) is still what it is
    version = retired_schema_version(version, names) or version
    return version, schema_hash(version, names)


def _saved_split(
    url: str, split_url: str, clip_ids: pd.Series, s3: S3Config | None
) -> pd.Series | None:
    if not exists(split_url, s3=s3):
        return None
    saved = pd.read_csv(io.BytesIO(read_bytes(split_url, s3=s3)), dtype=str)
    if not {ID_COLUMN, "split"} <= set(saved.columns):
        raise SchemaError(f"{split_url}: expected columns {ID_COLUMN!r} and 'split'")
    mapping = dict(zip(saved[ID_COLUMN], saved["split"], strict=True))
    split = clip_ids.map(mapping)
    missing = clip_ids[split.isna()]
    if len(missing):
        raise TrainingError(
            f"{url}: {len(missing)} clip(s) have no entry in {split_url} "
            f"(first: {missing.iloc[0]!r}); re-run extraction or remove the split file"
        )
    unknown = sorted(set(split) - set(SPLITS))
    if unknown:
        raise SchemaError(f"{split_url}: unknown split name(s) {unknown} (allowed: {SPLITS})")
    return split.astype(str)


def _check_split(url: str, labels: pd.Series, split: pd.Series) -> None:
    if not (split == "val").any():
        raise TrainingError(
            f"{url}: no rows left to validate on ({len(labels)} rows); "
            "training needs at least 3 rows per genre"
        )
    missing = sorted(set(labels) - set(labels[split == "train"]))
    if missing:
        raise TrainingError(f"{url}: genre(s) {missing} have no training rows")


def load_feature_table(
    url: str,
    *,
    s3: S3Config | None = None,
    split_seed: int = 0,
    max_bytes: int = MAX_TABLE_BYTES,
) -> FeatureTable:
    """Read and validate a table; every problem is reported with the column or row at fault."""
    table_url = resolve_table_url(url, s3=s3)
    data = read_bytes(table_url, s3=s3, max_bytes=max_bytes)
    frame, metadata = _read_frame(table_url, data)
    if frame.empty:
        raise SchemaError(f"{table_url}: the table has no rows")
    frame = frame.reset_index(drop=True)
    names = _check_columns(table_url, frame)
    labels = _labels(table_url, frame)
    clip_ids = _clip_ids(table_url, frame)
    if labels.nunique() < 2:
        raise TrainingError(f"{table_url}: only one genre ({labels.iloc[0]!r}); need two or more")

    split_url = _sibling(table_url, SPLIT_FILE)
    split = _saved_split(table_url, split_url, clip_ids, s3) if ID_COLUMN in frame else None
    if split is None:
        by_id = stratified_split(clip_ids.tolist(), labels.tolist(), seed=split_seed)
        split = clip_ids.map(by_id).astype(str)
        split_source = f"stratified(seed={split_seed})"
    else:
        split_source = split_url
    _check_split(table_url, labels, split)

    manifest_url = _sibling(table_url, MANIFEST_FILE)
    manifest = None
    if exists(manifest_url, s3=s3):
        try:
            manifest = json.loads(read_bytes(manifest_url, s3=s3, max_bytes=64 * 1024**2))
        except (GenreopsError, ValueError) as error:
            # a broken manifest is not worth refusing to train over, but it is worth saying
            log.warning("%s: unreadable manifest, training without it (%s)", manifest_url, error)
    version, fingerprint = _schema(names, metadata)
    return FeatureTable(
        url=table_url,
        features=frame[names].astype(np.float64),
        labels=labels,
        clip_ids=clip_ids,
        split=split.reset_index(drop=True),
        split_source=split_source,
        schema_version=version,
        schema_hash=fingerprint,
        digest=hashlib.sha256(data).hexdigest()[:16],
        manifest=manifest,
    )
