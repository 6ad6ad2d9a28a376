"""Feature tables for training: load, validate and split any table in the documented shape.

A table has a label column, an optional id column and numeric feature columns, nothing else;
it is Parquet or CSV, local or on S3. Two shapes are recognised without options: ours
(``clip_id``, ``genre``) and the public GTZAN tables (``features_30_sec.csv``,
``features_3_sec.csv``: ``filename`` is the id, ``label`` the genre and ``length``, a sample
count, is metadata that is dropped, never a feature). Other names are given as options
(``label_column``, ``id_column``); ``drop_columns`` leaves further columns out.

Columns that are neither features nor known metadata: a non-numeric one is refused by name;
a numeric one whose name looks like metadata (a label, id, split or row index such as
``label``, ``filename``, ``fold``, ``index`` or pandas' ``Unnamed: 0``) is refused by name too,
because a model would learn the answer from it. Drop it or rename it: only ``length`` is
left out without being asked, and every left-out column is recorded in the FeatureTable.

Rows of one song must not be split across train/val/test: when every id looks like a segment
of a song (``blues.00000.3.wav``, as in ``features_3_sec.csv``) the split groups rows by song;
``group_column`` groups by any column (an artist, say).

Next to a table written by ``genreops extract`` lie ``split.csv`` and ``manifest.json``: the
split is reused so training validates on the clips extraction set aside, and the manifest
travels with the model. A ``split.csv`` (columns ``clip_id``, ``split``) next to any table
with ids is used the same way, keyed by that table's ids.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from genreops.core.errors import GenreopsError, SchemaError, StorageError, TrainingError
from genreops.data.datasets import stratified_split
from genreops.data.features import (
    FEATURE_NAMES,
    SCHEMA_VERSION,
    retired_schema_version,
    schema_hash,
)
from genreops.data.storage import S3Config, exists, is_s3_url, join_url, list_objects, read_bytes

LABEL_COLUMN = "genre"
ID_COLUMN = "clip_id"
# Looked for in this order when no column is named: ours first, then the public GTZAN table's.
LABEL_COLUMNS = (LABEL_COLUMN, "label")
ID_COLUMNS = (ID_COLUMN, "filename")
# Metadata of the public GTZAN tables that is never a feature (a sample count, e.g. 661794).
METADATA_COLUMNS = ("length",)
# Names refused as features even when numeric: a label, id, split or row index to learn from.
_METADATA_LOOKING = re.compile(
    r"(genre|label|clip_id|filename|split|fold|index|level_0|id|unnamed: *\d+)", re.IGNORECASE
)
# A segment of a song, as in features_3_sec.csv: <song>.<segment>.<ext>, the song <name>.<n>.
_SEGMENT_ID = re.compile(r"(?P<song>.+\.\d+)\.\d+\.[A-Za-z0-9]+")
SPLITS = ("train", "val", "test")
TABLE_FILE = "features.parquet"  # what ``genreops extract`` writes
TABLE_SUFFIXES = (".parquet", ".pq", ".csv")
SPLIT_FILE = "split.csv"
MANIFEST_FILE = "manifest.json"
CUSTOM_SCHEMA_VERSION = "custom"
MAX_TABLE_BYTES = 2 * 1024**3

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureTable:
    """A validated table: features in column order, labels, ids and a train/val/test split.

    ``label_column``, ``id_column`` (None: rows were numbered), ``group_source`` (None: rows
    were split one by one) and ``dropped_columns`` say how the source table was read.
    """

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
    label_column: str = LABEL_COLUMN
    id_column: str | None = ID_COLUMN
    dropped_columns: tuple[str, ...] = ()
    groups: pd.Series | None = field(default=None, repr=False)
    group_source: str | None = None

    @property
    def feature_names(self) -> list[str]:
        return [str(c) for c in self.features.columns]

    @property
    def genres(self) -> list[str]:
        return sorted(self.labels.unique().tolist())

    @property
    def columns_read(self) -> dict[str, str]:
        """How the table's columns were read, as strings (MLflow tags, logs, the CLI)."""
        return {
            "label_column": self.label_column,
            "id_column": self.id_column or "-",
            "dropped_columns": ",".join(self.dropped_columns) or "-",
            "split_groups": self.group_source or "-",
        }

    def describe_columns(self) -> str:
        """One line: which columns were the label and the ids, which were left out."""
        parts = [
            f"label {self.label_column!r}",
            f"ids {self.id_column!r}" if self.id_column else "ids: row numbers",
            f"{len(self.feature_names)} features",
        ]
        if self.dropped_columns:
            parts.append(f"not features: {', '.join(map(repr, self.dropped_columns))}")
        if self.groups is not None:
            parts.append(f"split grouped by {self.group_source}: {self.groups.nunique()} groups")
        return "; ".join(parts)

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
    """A table file as given; in a folder/prefix, ``features.parquet`` (from extraction), else
    the one .parquet/.csv table directly inside it (not ``split.csv``)."""
    if url.lower().endswith(TABLE_SUFFIXES):
        return url
    expected = (
        f"expected a .parquet/.csv file, a folder with {TABLE_FILE} as written by "
        "`genreops extract`, or a folder with one .parquet/.csv table"
    )
    candidate = join_url(url, TABLE_FILE)
    if exists(candidate, s3=s3):
        return candidate
    if not is_s3_url(url) and not exists(url):
        raise TrainingError(f"{url}: no such file or folder ({expected})")
    try:
        listed = list_objects(url, s3=s3, suffixes=TABLE_SUFFIXES)
    except StorageError as error:
        raise TrainingError(f"{url}: no feature table here ({expected}; {error})") from error
    tables = [o.url for o in listed if "/" not in o.relative and o.relative != SPLIT_FILE]
    if len(tables) == 1:
        return tables[0]
    if not tables:
        raise TrainingError(f"{url}: no feature table here ({expected})")
    raise TrainingError(
        f"{url}: {len(tables)} candidate tables here, name one of them: {', '.join(tables)}"
    )


def _sibling(url: str, name: str) -> str:
    return f"{url.rsplit('/', 1)[0]}/{name}" if "/" in url else name


def _read_frame(
    url: str, data: bytes, text_columns: Sequence[str]
) -> tuple[pd.DataFrame, dict[bytes, bytes]]:
    try:
        if url.lower().endswith(".csv"):
            # labels and ids stay text ("00123" is not 123); absent names are ignored
            frame = pd.read_csv(io.BytesIO(data), dtype=dict.fromkeys(text_columns, "string"))
            return frame, {}
        arrow = pq.read_table(io.BytesIO(data))
        return arrow.to_pandas(), dict(arrow.schema.metadata or {})
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise SchemaError(f"{url}: not a readable table ({error})") from error


def _shown(columns: Sequence[str]) -> str:
    return ", ".join(map(repr, columns[:8])) + (", ..." if len(columns) > 8 else "")


def _named_list(names: Sequence[str]) -> str:
    """'a' (nor are 'b', 'c' ...): the first in full, a few more after it."""
    more = names[1:4]
    return names[0] + (
        f" (nor are {', '.join(more)}{' ...' if len(names) > 4 else ''})" if more else ""
    )


@dataclass(frozen=True)
class _Columns:
    """What each column of a table is for."""

    label: str
    id: str | None
    group: str | None
    dropped: tuple[str, ...]
    features: list[str]


def _pick(
    url: str, columns: list[str], named: str | None, candidates: Sequence[str], role: str
) -> str | None:
    if named is not None:
        if named not in columns:
            raise SchemaError(f"{url}: no {role} column {named!r} (columns: {_shown(columns)})")
        return named
    return next((c for c in candidates if c in columns), None)


def _resolve_columns(
    url: str,
    frame: pd.DataFrame,
    *,
    label_column: str | None,
    id_column: str | None,
    group_column: str | None,
    drop_columns: Sequence[str],
) -> _Columns:
    """Label, id, group and dropped columns; every other column must be a numeric feature."""
    columns = [str(c) for c in frame.columns]
    label = _pick(url, columns, label_column, LABEL_COLUMNS, "label")
    if label is None:
        raise SchemaError(
            f"{url}: no label column (looked for {', '.join(map(repr, LABEL_COLUMNS))}; columns: "
            f"{_shown(columns)}); name it with label_column (CLI: --label-column)"
        )
    ids = _pick(url, columns, id_column, ID_COLUMNS, "id")
    group = _pick(url, columns, group_column, (), "group")
    for name in drop_columns:
        if name not in columns:
            raise SchemaError(f"{url}: no column {name!r} to drop (columns: {_shown(columns)})")
    roles = [c for c in (label, ids, group) if c is not None]
    clash = sorted({c for c in roles if roles.count(c) > 1} | (set(roles) & set(drop_columns)))
    if clash:
        raise SchemaError(f"{url}: column {clash[0]!r} is given more than one role")
    dropped = tuple(dict.fromkeys([*drop_columns, *(c for c in METADATA_COLUMNS if c in columns)]))
    dropped = tuple(c for c in dropped if c not in roles)
    names = [c for c in columns if c not in roles and c not in dropped]
    if not names:
        raise SchemaError(
            f"{url}: no feature columns besides {', '.join(map(repr, [*roles, *dropped]))}"
        )
    metadata = [repr(c) for c in names if _METADATA_LOOKING.fullmatch(c.strip())]
    if metadata:
        raise SchemaError(
            f"{url}: column {_named_list(metadata)} looks like metadata (a label, id, split or "
            f"row index), not a feature: a model would learn the answer from it; the label is "
            f"{label!r}" + (f", the ids {ids!r}" if ids else "") + "; leave it out with "
            "drop_columns (CLI: --drop-column), choose it with label_column/id_column, or "
            "rename it if it really is a feature"
        )
    bad = [
        f"{c!r} ({frame[c].dtype})"
        for c in names
        if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
    ]
    if bad:
        raise SchemaError(
            f"{url}: feature column {_named_list(bad)} is not numeric; a table holds a label "
            f"column ({label!r}), an optional id column and numeric features only (leave other "
            "columns out with drop_columns, CLI: --drop-column)"
        )
    for name in names:
        values = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        bad_rows = np.flatnonzero(~np.isfinite(values))
        if bad_rows.size:
            raise SchemaError(
                f"{url}: feature column {name!r} has {bad_rows.size} missing or infinite "
                f"value(s) (first at row {int(bad_rows[0])})"
            )
    return _Columns(label=label, id=ids, group=group, dropped=dropped, features=names)


def _labels(url: str, frame: pd.DataFrame, column: str) -> pd.Series:
    labels = frame[column].astype("string").str.strip()
    empty = np.flatnonzero((labels.isna() | (labels == "")).to_numpy())
    if empty.size:
        raise SchemaError(
            f"{url}: {empty.size} row(s) have no {column!r} (first at row {int(empty[0])})"
        )
    return labels.astype(str).reset_index(drop=True)


def _clip_ids(url: str, frame: pd.DataFrame, column: str | None) -> pd.Series:
    if column is None:
        return pd.Series([f"row-{i}" for i in range(len(frame))], dtype=object)
    ids = frame[column].astype("string")
    if ids.isna().any():
        first = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise SchemaError(
            f"{url}: {int(ids.isna().sum())} row(s) have no {column!r} (first at row {first})"
        )
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise SchemaError(
            f"{url}: {column!r} {duplicated.iloc[0]!r} appears more than once "
            f"({len(duplicated)} duplicate(s), first again at row {int(duplicated.index[0])})"
        )
    return ids.astype(str).reset_index(drop=True)


def _groups(
    url: str, frame: pd.DataFrame, columns: _Columns, clip_ids: pd.Series
) -> tuple[pd.Series | None, str | None]:
    """What keeps rows together in the split: a group column, or the song of segment ids."""
    if columns.group is not None:
        groups = frame[columns.group].astype("string").str.strip()
        empty = np.flatnonzero((groups.isna() | (groups == "")).to_numpy())
        if empty.size:
            raise SchemaError(
                f"{url}: {empty.size} row(s) have no {columns.group!r} "
                f"(first at row {int(empty[0])})"
            )
        return groups.astype(str).reset_index(drop=True), f"column {columns.group!r}"
    if columns.id is None:
        return None, None
    songs = clip_ids.str.extract(_SEGMENT_ID.pattern + "$")["song"]
    if songs.isna().any() or not songs.duplicated().any():
        return None, None
    return songs.astype(str), f"song, from the {columns.id!r} ids"


def _grouped_split(groups: pd.Series, labels: pd.Series, seed: int) -> pd.Series:
    """Whole groups go to one split, stratified by each group's most common label."""
    counts = pd.crosstab(groups.to_numpy(), labels.to_numpy())  # sorted both ways
    label_of = counts.idxmax(axis=1)  # ties: the first label in order
    by_group = stratified_split(
        [str(g) for g in label_of.index], [str(v) for v in label_of], seed=seed
    )
    return groups.map(by_group).astype(str)


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


def _check_split(url: str, labels: pd.Series, split: pd.Series, unit: str = "rows") -> None:
    if not (split == "val").any():
        raise TrainingError(
            f"{url}: no rows left to validate on ({len(labels)} rows); "
            f"training needs at least 3 {unit} per genre"
        )
    missing = sorted(set(labels) - set(labels[split == "train"]))
    if missing:
        raise TrainingError(f"{url}: genre(s) {missing} have no training rows")


def _check_groups_kept_together(
    url: str, split_url: str, split: pd.Series, groups: pd.Series
) -> None:
    spread = split.groupby(groups.to_numpy()).nunique()
    spread = spread[spread > 1]
    if len(spread):
        raise TrainingError(
            f"{split_url}: rows of group {spread.index[0]!r} ({len(spread)} group(s) in all) "
            f"are in more than one split; rows of one song or group must stay together or "
            f"validation leaks (fix or remove the split file next to {url})"
        )


def load_feature_table(
    url: str,
    *,
    s3: S3Config | None = None,
    split_seed: int = 0,
    max_bytes: int = MAX_TABLE_BYTES,
    label_column: str | None = None,
    id_column: str | None = None,
    group_column: str | None = None,
    drop_columns: Sequence[str] = (),
) -> FeatureTable:
    """Read and validate a table; every problem is reported with the column or row at fault.

    ``label_column``/``id_column``: None looks for ours (``genre``/``clip_id``), then the
    public GTZAN table's (``label``/``filename``). ``group_column``: rows sharing a value stay
    in one split (default: by song when ids are song segments). ``drop_columns``: left out.
    """
    table_url = resolve_table_url(url, s3=s3)
    data = read_bytes(table_url, s3=s3, max_bytes=max_bytes)
    named = [c for c in (label_column, id_column, group_column) if c is not None]
    frame, metadata = _read_frame(table_url, data, [*LABEL_COLUMNS, *ID_COLUMNS, *named])
    if frame.empty:
        raise SchemaError(f"{table_url}: the table has no rows")
    frame = frame.reset_index(drop=True)
    columns = _resolve_columns(
        table_url,
        frame,
        label_column=label_column,
        id_column=id_column,
        group_column=group_column,
        drop_columns=list(drop_columns),
    )
    names = columns.features
    labels = _labels(table_url, frame, columns.label)
    clip_ids = _clip_ids(table_url, frame, columns.id)
    if labels.nunique() < 2:
        raise TrainingError(f"{table_url}: only one genre ({labels.iloc[0]!r}); need two or more")
    groups, group_source = _groups(table_url, frame, columns, clip_ids)

    split_url = _sibling(table_url, SPLIT_FILE)
    split = _saved_split(table_url, split_url, clip_ids, s3) if columns.id is not None else None
    if split is not None:
        split_source = split_url
        if groups is not None:
            _check_groups_kept_together(table_url, split_url, split, groups)
    elif groups is not None:
        split = _grouped_split(groups, labels, split_seed)
        split_source = f"stratified(seed={split_seed}, grouped by {group_source})"
    else:
        by_id = stratified_split(clip_ids.tolist(), labels.tolist(), seed=split_seed)
        split = clip_ids.map(by_id).astype(str)
        split_source = f"stratified(seed={split_seed})"
    _check_split(table_url, labels, split, "rows" if groups is None else "groups")

    manifest_url = _sibling(table_url, MANIFEST_FILE)
    manifest = None
    if exists(manifest_url, s3=s3):
        try:
            manifest = json.loads(read_bytes(manifest_url, s3=s3, max_bytes=64 * 1024**2))
        except (GenreopsError, ValueError) as error:
            # a broken manifest is not worth refusing to train over, but it is worth saying
            log.warning("%s: unreadable manifest, training without it (%s)", manifest_url, error)
    version, fingerprint = _schema(names, metadata)
    digest = hashlib.sha256(data)
    reading = (columns.label, columns.id, columns.group, columns.dropped)
    if reading not in ((LABEL_COLUMN, ID_COLUMN, None, ()), (LABEL_COLUMN, None, None, ())):
        # the same bytes read another way are another training set (study names, reuse)
        digest.update(json.dumps(reading).encode())
    return FeatureTable(
        url=table_url,
        features=frame[names].astype(np.float64),
        labels=labels,
        clip_ids=clip_ids,
        split=split.reset_index(drop=True),
        split_source=split_source,
        schema_version=version,
        schema_hash=fingerprint,
        digest=digest.hexdigest()[:16],
        manifest=manifest,
        label_column=columns.label,
        id_column=columns.id,
        dropped_columns=columns.dropped,
        groups=groups,
        group_source=group_source,
    )
