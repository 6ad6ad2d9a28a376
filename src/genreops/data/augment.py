"""A feature table grown by labeled clips: what retraining trains on.

The base is a table ``genreops extract`` wrote (``clip_id``, ``genre``, the schema's feature
columns, the schema in its Parquet metadata). Each labeled clip (its id is the path or s3://
URL it was served as, its genre the latest label) is decoded and extracted like any other
clip and appended; a clip already in the base replaces its row (the label is newer). A clip
that cannot be read, or whose genre the base does not know (a model trained on it would
answer genres the served ensemble cannot), is left out with its reason, never silently.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from genreops.core.errors import SchemaError
from genreops.data.datasets import LabeledClip
from genreops.data.extraction import Chunk, ExtractOptions, extract_chunk
from genreops.data.feature_table import TABLE_FILE, resolve_table_url
from genreops.data.features import FEATURE_NAMES
from genreops.data.storage import S3Config, join_url, read_bytes, write_bytes

ID, LABEL = "clip_id", "genre"
MANIFEST_FILE = "augment.json"


@dataclass
class AugmentedTable:
    """Where the grown table is and what went into it."""

    url: str
    base_url: str
    base_rows: int
    added: int = 0  # labeled clips appended
    replaced: int = 0  # labeled clips that were in the base already (their row replaced)
    left_out: list[str] = field(default_factory=list)  # "clip: reason"


def _read_base(url: str, s3: S3Config | None) -> pa.Table:
    if not url.lower().endswith(".parquet"):
        raise SchemaError(
            f"{url}: retraining grows a Parquet table written by `genreops extract`; "
            "extract the corpus first (a CSV such as the public GTZAN table cannot take "
            "new clips: its columns are not this version's features)"
        )
    try:
        table = pq.read_table(io.BytesIO(read_bytes(url, s3=s3)))
    except (OSError, ValueError) as error:
        raise SchemaError(f"{url}: not a readable Parquet table ({error})") from error
    missing = [c for c in (ID, LABEL, *FEATURE_NAMES) if c not in table.column_names]
    if missing:
        raise SchemaError(
            f"{url}: not a feature table of this schema (missing {', '.join(missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''}); re-extract it with `genreops extract`"
        )
    return table


def augment_table(
    base_url: str,
    labels: Sequence[tuple[str, str]],
    output_url: str,
    *,
    options: ExtractOptions | None = None,
    s3: S3Config | None = None,
) -> AugmentedTable:
    """Write ``<output_url>/features.parquet``: the base table plus the labeled clips."""
    base_url = resolve_table_url(base_url, s3=s3)
    base = _read_base(base_url, s3)
    known = set(base.column(LABEL).to_pylist())
    result = AugmentedTable(url=join_url(output_url, TABLE_FILE), base_url=base_url,
                            base_rows=base.num_rows)  # fmt: skip
    clips = []
    for clip_id, genre in dict(labels).items():  # one label per clip: the caller's latest
        if genre not in known:
            result.left_out.append(
                f"{clip_id}: genre {genre!r} is not one of the table's ({', '.join(sorted(known))})"
            )
            continue
        clips.append(LabeledClip(url=clip_id, clip_id=clip_id, genre=genre, size=0,
                                 fingerprint=""))  # fmt: skip
    extracted = extract_chunk(Chunk("labeled", tuple(clips)), options or ExtractOptions(), s3=s3)
    result.left_out += [f"{f.clip_id}: {f.message}" for f in extracted.failures]
    new_ids = set(extracted.clip_ids)
    keep = [i for i, clip_id in enumerate(base.column(ID).to_pylist()) if clip_id not in new_ids]
    result.replaced = base.num_rows - len(keep)
    result.added = len(extracted.clip_ids) - result.replaced
    columns: dict[str, pa.Array] = {
        ID: pa.array(extracted.clip_ids, type=base.schema.field(ID).type),
        LABEL: pa.array(extracted.genres, type=base.schema.field(LABEL).type),
    }
    for index, name in enumerate(FEATURE_NAMES):
        columns[name] = pa.array(extracted.features[:, index], type=base.schema.field(name).type)
    added = pa.table({name: columns[name] for name in (ID, LABEL, *FEATURE_NAMES)})
    grown = pa.concat_tables(
        [base.take(keep).select([ID, LABEL, *FEATURE_NAMES]), added]
    ).replace_schema_metadata(base.schema.metadata)
    sink = io.BytesIO()
    pq.write_table(grown, sink, compression="zstd")
    write_bytes(result.url, sink.getvalue(), s3=s3)
    write_bytes(
        join_url(output_url, MANIFEST_FILE),
        json.dumps({**asdict(result), "rows": grown.num_rows}, indent=2).encode(),
        s3=s3,
    )
    return result
