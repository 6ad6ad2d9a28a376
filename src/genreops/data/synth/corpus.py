"""A corpus in the GTZAN layout with a manifest; reused when an identical one is on disk."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import soundfile as sf

from genreops.core.files import atomic_target, atomic_write
from genreops.data.genres import GENRES
from genreops.data.synth.dsp import SR
from genreops.data.synth.render import _genre_index, clip_seed, render_clip

logger = logging.getLogger(__name__)


# Bump whenever a change alters rendered samples: manifests record it, cached corpora compare it.
GENERATOR_VERSION = "1"
MANIFEST_NAME = "manifest.json"


def _render_one(job: tuple[str, int, int, float, bool, str]) -> tuple[str, str, int, int, str]:
    """Render and write one corpus file; runs in a worker process when ``workers > 1``."""
    genre, index, seed, seconds, drift, out_dir = job
    rel = f"{genre}/{genre}.{index:05d}.wav"
    path = Path(out_dir) / rel
    y = render_clip(genre, seed, seconds, drift=drift)
    with atomic_target(path) as temporary:
        sf.write(temporary, y, SR, subtype="PCM_16", format="WAV")
    return rel, genre, index, seed, _sha256(path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _params(
    per_genre: int, seconds: float, seed: int, drift: bool, genres: Sequence[str]
) -> dict[str, Any]:
    return {
        "generator": "genreops.synth",
        "generator_version": GENERATOR_VERSION,
        "sample_rate": SR,
        "seed": seed,
        "seconds": seconds,
        "drift": drift,
        "per_genre": per_genre,
        "genres": list(genres),
    }


def _read_manifest(manifest: Path) -> dict[str, Any] | None:
    try:
        body = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _up_to_date(old: dict[str, Any] | None, root: Path, params: dict[str, Any]) -> bool:
    """An existing corpus with the same parameters and untouched files can be reused as is."""
    if old is None or {k: old.get(k) for k in params} != params:
        return False
    files = old.get("files", [])
    return all(
        (root / f["path"]).is_file() and _sha256(root / f["path"]) == f["sha256"] for f in files
    )


# Only files named like this, listed in an earlier manifest, are ever deleted.
_CLIP_NAME = re.compile(r"^([a-z]+)/\1\.\d{5}\.wav$")


def _remove_stale(old: dict[str, Any] | None, root: Path, keep: set[str]) -> None:
    """Delete clips an earlier, larger render wrote that the new corpus does not contain."""
    if old is None:
        return
    for entry in old.get("files", []):
        rel = entry.get("path") if isinstance(entry, dict) else None
        if isinstance(rel, str) and rel not in keep and _CLIP_NAME.match(rel):
            (root / rel).unlink(missing_ok=True)


def render_corpus(
    out_dir: Path,
    per_genre: int,
    seconds: float = 30.0,
    seed: int = 0,
    *,
    drift: bool = False,
    genres: Sequence[str] = GENRES,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> Path:
    """Write a synthetic corpus in the GTZAN layout and return its manifest's path.

    Files are ``<out_dir>/<genre>/<genre>.<index:05d>.wav`` (16-bit PCM mono, 22,050 Hz); the
    manifest (``manifest.json``) holds the parameters, per-genre counts and every file's path,
    clip seed and sha256. A corpus already on disk with the same parameters and intact files is
    reused without rendering; clips of an earlier render that the new one does not contain are
    deleted (only files that earlier manifest lists). Other files in ``out_dir`` are left alone.
    """
    for genre in genres:
        _genre_index(genre)
    if per_genre < 0:
        raise ValueError(f"per_genre must be >= 0, got {per_genre}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not (math.isfinite(seconds) and round(seconds * SR) >= 1):
        raise ValueError(f"seconds must be a finite length of at least one sample, got {seconds}")
    genres = list(dict.fromkeys(genres))
    out_dir = Path(out_dir)
    manifest = out_dir / MANIFEST_NAME
    params = _params(per_genre, float(seconds), seed, drift, genres)
    previous = _read_manifest(manifest)
    if _up_to_date(previous, out_dir, params):
        logger.info("synthetic corpus %s is up to date, not re-rendering", out_dir)
        if progress is not None:
            progress(per_genre * len(genres))
        return manifest
    manifest.unlink(missing_ok=True)  # a crash while rendering must not leave a stale manifest
    for genre in genres:
        (out_dir / genre).mkdir(parents=True, exist_ok=True)
    jobs = [
        (genre, i, clip_seed(seed, i), float(seconds), drift, str(out_dir))
        for i in range(per_genre)
        for genre in genres
    ]
    logger.info(
        "rendering %d synthetic clips of %.1f s into %s (drift=%s)",
        len(jobs),
        seconds,
        out_dir,
        drift,
    )
    results = []
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            for res in pool.map(_render_one, jobs, chunksize=max(1, len(jobs) // (8 * workers))):
                results.append(res)
                if progress is not None:
                    progress(1)
    else:
        for job in jobs:
            results.append(_render_one(job))
            if progress is not None:
                progress(1)
    results.sort(key=lambda r: r[0])
    _remove_stale(previous, out_dir, {r[0] for r in results})
    body = {
        **params,
        "counts": {g: sum(1 for r in results if r[1] == g) for g in genres},
        "files": [
            {"path": rel, "genre": g, "index": i, "clip_seed": s, "sha256": h}
            for rel, g, i, s, h in results
        ],
    }
    atomic_write(manifest, json.dumps(body, indent=1) + "\n")
    return manifest
