"""Labeled datasets: discover GTZAN-style folders anywhere storage reaches, split them stably.

Layout: ``<root>/<genre>/<anything>.<ext>``; the genre is the folder name (lowercased) and the
clip id is the posix path under the root (``blues/blues.00042.wav``), so ids are the same
whether the corpus sits in a local folder or under an ``s3://`` prefix.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from genreops.core.errors import decode_name
from genreops.data.audio import SUPPORTED_EXTENSIONS
from genreops.data.storage import Location, S3Config, list_objects

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_EXAMPLES = 3  # how many offending names a warning shows


@dataclass(frozen=True)
class LabeledClip:
    """One labeled audio file; ``size`` and ``fingerprint`` tell whether it changed."""

    url: str
    clip_id: str
    genre: str
    size: int
    fingerprint: str


def clip_id_for(relative: str) -> str:
    """The clip id of a file at ``relative``: the path itself, except that bytes of a local
    file name that are not UTF-8 are written as escapes (``caf\\xe9.wav``), so the id can be
    stored in parquet, JSON and databases while the file is still opened by its real name."""
    return decode_name(relative.encode("utf-8", "surrogateescape"))


def discover_labeled(
    root_url: Location,
    *,
    s3: S3Config | None = None,
    extensions: tuple[str, ...] = SUPPORTED_EXTENSIONS,
) -> list[LabeledClip]:
    """Every audio file at ``<root>/<genre>/<file>``, sorted by clip id.

    Hidden files and folders (``.name``) are ignored; files directly under the root or nested
    deeper than one folder are skipped with a warning; other extensions are counted and logged.
    A missing root raises StorageError.
    """
    wanted = tuple(ext.lower() for ext in extensions)
    clips: list[LabeledClip] = []
    misplaced: list[str] = []
    not_audio: list[str] = []
    for item in list_objects(root_url, s3=s3):
        clip_id = clip_id_for(item.relative)
        parts = clip_id.split("/")
        if any(part.startswith(".") for part in parts):
            continue
        if not clip_id.lower().endswith(wanted):
            not_audio.append(clip_id)
            continue
        if len(parts) != 2:
            misplaced.append(clip_id)
            continue
        clips.append(
            LabeledClip(
                url=item.url,
                clip_id=clip_id,
                genre=parts[0].lower(),
                size=item.size,
                fingerprint=item.fingerprint,
            )
        )
    if misplaced:
        logger.warning(
            "%s: skipped %d audio file(s) not at <genre>/<file> (e.g. %s)",
            root_url,
            len(misplaced),
            ", ".join(misplaced[:_EXAMPLES]),
        )
    if not_audio:
        logger.info(
            "%s: ignored %d non-audio file(s) (e.g. %s)",
            root_url,
            len(not_audio),
            ", ".join(not_audio[:_EXAMPLES]),
        )
    clips.sort(key=lambda clip: clip.clip_id)
    logger.info("%s: %d clips in %d genres", root_url, len(clips), len({c.genre for c in clips}))
    return clips


def _rank_key(clip_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}\x00{clip_id}".encode()).hexdigest()


def _count(n: int, share: float) -> int:
    return math.floor(n * share + 0.5)  # round half up, not to even


def stratified_split(
    clip_ids: Sequence[str],
    labels: Sequence[str],
    *,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
) -> dict[str, str]:
    """Map each clip id to "train", "val" or "test", stratified per label.

    Within a label, clips are ordered by a seeded hash of their id; the first ``test`` share
    goes to test, the next ``val`` share to val, the rest to train. The result therefore does
    not depend on input order, and adding a clip moves at most one other clip of its label
    across a split boundary. A label with at least 3 clips gets one clip in every split whose
    share is above zero, and always keeps at least one training clip.
    """
    if len(clip_ids) != len(labels):
        raise ValueError(f"{len(clip_ids)} clip ids but {len(labels)} labels")
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"val={val} and test={test} must be >= 0 and sum to less than 1")
    by_label: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for clip_id, label in zip(clip_ids, labels, strict=True):
        if clip_id in seen:
            raise ValueError(f"duplicate clip id {clip_id!r}")
        seen.add(clip_id)
        by_label[label].append(clip_id)

    split: dict[str, str] = {}
    for members in by_label.values():
        ordered = sorted(members, key=lambda clip_id: (_rank_key(clip_id, seed), clip_id))
        n = len(ordered)
        n_test, n_val = _count(n, test), _count(n, val)
        if n >= 3:
            n_test = max(n_test, 1 if test > 0 else 0)
            n_val = max(n_val, 1 if val > 0 else 0)
        # Always keep at least one clip to train on; take it back from the larger split.
        while n_test + n_val > n - 1 and n_test + n_val > 0:
            if n_val >= n_test:
                n_val -= 1
            else:
                n_test -= 1
        for index, clip_id in enumerate(ordered):
            if index < n_test:
                split[clip_id] = "test"
            elif index < n_test + n_val:
                split[clip_id] = "val"
            else:
                split[clip_id] = "train"
    return split


class _Listed(Protocol):
    @property
    def clip_id(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...


def listing_hash(items: Iterable[_Listed]) -> str:
    """A stable hash of a listing (clip id, size, fingerprint), independent of order."""
    digest = hashlib.sha256()
    for clip_id, size, fingerprint in sorted((i.clip_id, i.size, i.fingerprint) for i in items):
        digest.update(f"{clip_id}\t{size}\t{fingerprint}\n".encode())
    return digest.hexdigest()
