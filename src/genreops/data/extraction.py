"""Feature extraction over a labeled corpus: plan chunks, extract them, assemble the outputs.

Stage logic only: the Prefect flow (``flows/extract.py``) decides where chunks run. A chunk's
result is saved under ``<output>/chunks/`` as soon as it is done, keyed by a hash of its inputs,
so a re-run (after a crash, a stopped S3 server or a killed worker) reuses finished chunks.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from genreops import __version__
from genreops.core.allocator import keep_freed_memory
from genreops.core.errors import AudioError, ExtractionError, StorageError
from genreops.core.settings import default
from genreops.data.audio import load_audio
from genreops.data.datasets import LabeledClip, discover_labeled, listing_hash, stratified_split
from genreops.data.features import FEATURE_NAMES, SCHEMA_HASH, SCHEMA_VERSION, extract_features
from genreops.data.storage import S3Config, exists, join_url, read_bytes, write_bytes

logger = logging.getLogger(__name__)

TABLE_FILE = "features.parquet"
SPLIT_FILE = "split.csv"
MANIFEST_FILE = "manifest.json"
CHUNKS_DIR = "chunks"
_FAILURES_KEY = b"genreops.failures"


@dataclass(frozen=True)
class ExtractOptions:
    """How clips are decoded; part of every chunk's identity, so changing it re-extracts."""

    offset: float = 0.0
    window_seconds: float = default("window_seconds")
    min_seconds: float = default("min_seconds")
    max_seconds: float = default("max_seconds")
    max_file_bytes: int = default("max_file_bytes")


@dataclass(frozen=True)
class Chunk:
    """A batch of clips extracted by one task; many clips per task keeps scheduling cheap."""

    chunk_id: str
    clips: tuple[LabeledClip, ...]


@dataclass(frozen=True)
class Failure:
    clip_id: str
    url: str
    reason: str
    message: str


@dataclass
class ChunkResult:
    chunk_id: str
    clip_ids: list[str]
    genres: list[str]
    features: np.ndarray  # (n_ok, n_features) float32
    failures: list[Failure]
    seconds: float
    reused: bool = False

    @property
    def n_clips(self) -> int:
        return len(self.clip_ids) + len(self.failures)


@dataclass
class ExtractionSummary:
    """What a finished run wrote; also what the CLI prints."""

    output_url: str
    table_url: str
    split_url: str
    manifest_url: str
    n_clips: int
    n_extracted: int
    failures: list[Failure] = field(default_factory=list)
    reused_chunks: int = 0
    seconds: float = 0.0


def list_clips(input_url: str, *, s3: S3Config | None = None) -> list[LabeledClip]:
    """Labeled clips under ``input_url`` (GTZAN layout); an empty input is an error."""
    clips = discover_labeled(input_url, s3=s3)
    if not clips:
        raise ExtractionError(
            f"{input_url}: no labeled audio found (expected <root>/<genre>/<clip>.<ext>)"
        )
    return clips


def plan_chunks(
    clips: Sequence[LabeledClip], chunk_size: int, options: ExtractOptions
) -> list[Chunk]:
    """Split clips into chunks whose ids depend only on their content, schema and options."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    ordered = sorted(clips, key=lambda clip: clip.clip_id)
    chunks = []
    for start in range(0, len(ordered), chunk_size):
        members = tuple(ordered[start : start + chunk_size])
        digest = hashlib.sha256()
        digest.update(f"{SCHEMA_HASH}|{json.dumps(asdict(options), sort_keys=True)}".encode())
        for clip in members:
            digest.update(f"|{clip.clip_id}|{clip.genre}|{clip.size}|{clip.fingerprint}".encode())
        chunks.append(Chunk(chunk_id=digest.hexdigest()[:16], clips=members))
    return chunks


def extract_chunk(
    chunk: Chunk, options: ExtractOptions, *, s3: S3Config | None = None
) -> ChunkResult:
    """Extract every clip of a chunk; a bad clip becomes a Failure, never an exception."""
    keep_freed_memory()  # a Dask worker's allocator would fault in every spectrogram anew
    started = time.perf_counter()
    clip_ids: list[str] = []
    genres: list[str] = []
    vectors: list[np.ndarray] = []
    failures: list[Failure] = []
    for clip in chunk.clips:
        try:
            samples = load_audio(
                clip.url,
                offset=options.offset,
                duration=options.window_seconds,
                name=clip.clip_id,
                min_seconds=options.min_seconds,
                max_seconds=options.max_seconds,
                max_bytes=options.max_file_bytes,
                s3=s3,
            )
            vectors.append(extract_features(samples))
        except AudioError as error:
            failures.append(Failure(clip.clip_id, clip.url, error.reason, str(error)))
            continue
        except StorageError:
            raise  # the store is unreachable: the task should be retried, not the clip dropped
        except Exception as error:  # one bad item must not take down the batch
            logger.exception("unexpected error on %s", clip.clip_id)
            failures.append(
                Failure(
                    clip.clip_id,
                    clip.url,
                    "error",
                    f"{clip.clip_id}: {type(error).__name__}: {error}",
                )
            )
            continue
        clip_ids.append(clip.clip_id)
        genres.append(clip.genre)
    matrix = (
        np.vstack(vectors).astype(np.float32)
        if vectors
        else np.empty((0, len(FEATURE_NAMES)), dtype=np.float32)
    )
    return ChunkResult(
        chunk_id=chunk.chunk_id,
        clip_ids=clip_ids,
        genres=genres,
        features=matrix,
        failures=failures,
        seconds=time.perf_counter() - started,
    )


def chunk_url(output_url: str, chunk_id: str) -> str:
    return join_url(output_url, CHUNKS_DIR, f"{chunk_id}.parquet")


def save_chunk(result: ChunkResult, output_url: str, *, s3: S3Config | None = None) -> None:
    table = _to_frame(result.clip_ids, result.genres, result.features)
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    failures = json.dumps(
        {"failures": [asdict(f) for f in result.failures], "seconds": result.seconds}
    )
    arrow = arrow.replace_schema_metadata(
        {**(arrow.schema.metadata or {}), _FAILURES_KEY: failures}
    )
    write_bytes(chunk_url(output_url, result.chunk_id), _parquet_bytes(arrow), s3=s3)


def load_chunk(chunk_id: str, output_url: str, *, s3: S3Config | None = None) -> ChunkResult | None:
    """A previously saved chunk, or None if absent or written under another schema."""
    url = chunk_url(output_url, chunk_id)
    if not exists(url, s3=s3):
        return None
    arrow = pq.read_table(io.BytesIO(read_bytes(url, s3=s3)))
    frame = arrow.to_pandas()
    if list(frame.columns[2:]) != list(FEATURE_NAMES):
        return None
    meta = json.loads((arrow.schema.metadata or {}).get(_FAILURES_KEY, b"{}"))
    return ChunkResult(
        chunk_id=chunk_id,
        clip_ids=frame["clip_id"].astype(str).tolist(),
        genres=frame["genre"].astype(str).tolist(),
        features=frame[list(FEATURE_NAMES)].to_numpy(dtype=np.float32),
        failures=[Failure(**f) for f in meta.get("failures", [])],
        seconds=float(meta.get("seconds", 0.0)),
        reused=True,
    )


def extract_or_reuse_chunk(
    chunk: Chunk, options: ExtractOptions, output_url: str, *, s3: S3Config | None = None
) -> ChunkResult:
    """Resume point of a run: finished chunks are read back instead of recomputed."""
    saved = load_chunk(chunk.chunk_id, output_url, s3=s3)
    if saved is not None:
        return saved
    result = extract_chunk(chunk, options, s3=s3)
    save_chunk(result, output_url, s3=s3)
    return result


def extract_in_process(
    input_url: str, output_url: str, options: ExtractOptions, *, chunk_size: int = 64
) -> ExtractionSummary:
    """The whole extraction in this process, one chunk after another: no Prefect, no Dask.

    For small corpora (tests, benchmarks); the ``extract-features`` flow is the scalable path.
    """
    clips = list_clips(input_url)
    results = [extract_chunk(c, options) for c in plan_chunks(clips, chunk_size, options)]
    return finalize(
        input_url=input_url, output_url=output_url, clips=clips, results=results, options=options
    )


def finalize(
    *,
    input_url: str,
    output_url: str,
    clips: Sequence[LabeledClip],
    results: Sequence[ChunkResult],
    options: ExtractOptions,
    max_failed_share: float = 0.05,
    split_seed: int = 0,
    started_at: float | None = None,
    runner: dict[str, Any] | None = None,
    s3: S3Config | None = None,
) -> ExtractionSummary:
    """Write the table, split and manifest; fail the run only past ``max_failed_share``."""
    ordered = sorted(results, key=lambda r: r.chunk_id)
    clip_ids = [cid for r in ordered for cid in r.clip_ids]
    genres = [g for r in ordered for g in r.genres]
    matrix = (
        np.vstack([r.features for r in ordered])
        if ordered
        else np.empty((0, len(FEATURE_NAMES)), dtype=np.float32)
    )
    failures = sorted((f for r in ordered for f in r.failures), key=lambda f: f.clip_id)
    table = _to_frame(clip_ids, genres, matrix).sort_values("clip_id", ignore_index=True)
    accounted = len(table) + len(failures)
    if accounted != len(clips):  # nothing may be dropped silently
        raise ExtractionError(
            f"{input_url}: {len(clips)} clips listed but {accounted} accounted for "
            f"({len(table)} extracted, {len(failures)} failed)"
        )

    split = (
        stratified_split(table["clip_id"].tolist(), table["genre"].tolist(), seed=split_seed)
        if len(table)
        else {}
    )
    split_frame = pd.DataFrame(
        {
            "clip_id": table["clip_id"],
            "genre": table["genre"],
            "split": [split[c] for c in table["clip_id"]],
        }
    )
    table_url = join_url(output_url, TABLE_FILE)
    split_url = join_url(output_url, SPLIT_FILE)
    manifest_url = join_url(output_url, MANIFEST_FILE)
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata(
        {
            **(arrow.schema.metadata or {}),
            b"genreops.schema_version": SCHEMA_VERSION.encode(),
            b"genreops.schema_hash": SCHEMA_HASH.encode(),
        }
    )
    write_bytes(table_url, _parquet_bytes(arrow), s3=s3)
    write_bytes(split_url, split_frame.to_csv(index=False).encode(), s3=s3)

    elapsed = time.perf_counter() - started_at if started_at is not None else None
    extract_seconds = sum(r.seconds for r in ordered if not r.reused)
    fresh_clips = sum(r.n_clips for r in ordered if not r.reused)
    failed_share = len(failures) / len(clips) if clips else 0.0
    manifest: dict[str, Any] = {
        "kind": "genreops.features",
        "genreops_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "input_url": input_url,
        "output_url": output_url,
        "files": {"table": TABLE_FILE, "split": SPLIT_FILE},
        "schema": {
            "version": SCHEMA_VERSION,
            "hash": SCHEMA_HASH,
            "names": list(FEATURE_NAMES),
        },
        "options": asdict(options),
        "source": {"n_clips": len(clips), "listing_hash": listing_hash(clips)},
        "counts": {
            "extracted": len(table),
            "failed": len(failures),
            "failed_share": round(failed_share, 6),
            "per_genre": dict(sorted(Counter(table["genre"]).items())),
            "per_split": dict(sorted(Counter(split_frame["split"]).items())),
        },
        "split": {"file": SPLIT_FILE, "seed": split_seed},
        "failures": [asdict(f) for f in failures],
        "chunks": {
            "total": len(ordered),
            "reused": sum(r.reused for r in ordered),
        },
        "timings": {
            "total_seconds": round(elapsed, 3) if elapsed is not None else None,
            "extract_cpu_seconds": round(extract_seconds, 3),
            "ms_per_clip": round(1000 * extract_seconds / fresh_clips, 2) if fresh_clips else None,
        },
        "runner": runner or {},
    }
    write_bytes(manifest_url, json.dumps(manifest, indent=2).encode(), s3=s3)
    summary = ExtractionSummary(
        output_url=output_url,
        table_url=table_url,
        split_url=split_url,
        manifest_url=manifest_url,
        n_clips=len(clips),
        n_extracted=len(table),
        failures=failures,
        reused_chunks=manifest["chunks"]["reused"],
        seconds=elapsed or 0.0,
    )
    if failed_share > max_failed_share:
        raise ExtractionError(
            f"{input_url}: {len(failures)} of {len(clips)} clips failed "
            f"({failed_share:.1%} > allowed {max_failed_share:.1%}); see {manifest_url}"
        )
    return summary


def read_manifest(output_url: str, *, s3: S3Config | None = None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(read_bytes(join_url(output_url, MANIFEST_FILE), s3=s3))
    return data


def _to_frame(clip_ids: list[str], genres: list[str], matrix: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(matrix.astype(np.float32), columns=list(FEATURE_NAMES))
    frame.insert(0, "genre", pd.Series(genres, dtype="string"))
    frame.insert(0, "clip_id", pd.Series(clip_ids, dtype="string"))
    return frame


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()
