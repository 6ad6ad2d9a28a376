"""Ground truth after the fact: what served clips really were, stored as labels by clip id.

A feedback file is CSV (a header naming a clip column and a genre column) or JSON (a list of
objects with those keys, or one object mapping clip -> genre). The clip is the id a
prediction was stored under, which is the path or s3:// URL `genreops predict` and
`batch-predict` were given; a relative local path is also tried as an absolute one. Labels
of clips with no prediction yet are stored as well (the prediction may come later) and
counted as unknown; nothing read is dropped without a reason.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genreops.core.errors import GenreopsError
from genreops.monitoring.store import LABELS_TABLE, MonitoringStore

CLIP_COLUMNS = ("clip_id", "clip", "path", "file", "filename")
GENRE_COLUMNS = ("genre", "label", "true_genre")
MAX_FEEDBACK_BYTES = 64 * 1024 * 1024  # a label is a line; 64 MB is millions of them
CLIP_LENGTH = int(getattr(LABELS_TABLE.c.clip_id.type, "length", 512))
GENRE_LENGTH = int(getattr(LABELS_TABLE.c.genre.type, "length", 128))


class FeedbackError(GenreopsError):
    """A feedback file cannot be read as a whole (the message names it and why)."""


@dataclass
class FeedbackReport:
    """What one feedback file gave: labels stored, clips unknown so far, rows refused."""

    source: str
    stored: int = 0
    unknown: list[str] = field(default_factory=list)  # stored, but no prediction has that id
    refused: list[str] = field(default_factory=list)  # "row N: reason"

    @property
    def received(self) -> int:
        return self.stored + len(self.refused)


def _pick(names: Iterable[str], wanted: tuple[str, ...], what: str, source: str) -> str:
    by_lower = {name.strip().lower(): name for name in names}
    for name in wanted:
        if name in by_lower:
            return by_lower[name]
    raise FeedbackError(
        f"{source}: no {what} column (one of {', '.join(wanted)}); found {', '.join(by_lower)}"
    )


def parse_feedback(text: str, source: str) -> tuple[list[tuple[str, str]], list[str]]:
    """``(clip, genre)`` pairs in file order, and the rows refused with their reasons."""
    stripped = text.lstrip()
    rows: list[Mapping[str, Any]]
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(text)
        except ValueError as error:
            raise FeedbackError(f"{source}: not valid JSON ({error})") from error
        if isinstance(data, dict):
            rows = [{"clip_id": clip, "genre": genre} for clip, genre in data.items()]
        elif isinstance(data, list):
            rows = [row if isinstance(row, dict) else {"": row} for row in data]
        else:
            raise FeedbackError(f"{source}: JSON must be a list of objects or one object")
        if not rows:
            return [], []
        names = {name for row in rows for name in row}
        clip_key = _pick(names, CLIP_COLUMNS, "clip", source)
        genre_key = _pick(names, GENRE_COLUMNS, "genre", source)
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise FeedbackError(f"{source}: empty, or no CSV header")
        clip_key = _pick(reader.fieldnames, CLIP_COLUMNS, "clip", source)
        genre_key = _pick(reader.fieldnames, GENRE_COLUMNS, "genre", source)
        rows = list(reader)
    pairs: list[tuple[str, str]] = []
    refused: list[str] = []
    for number, row in enumerate(rows, start=1):
        clip, genre = row.get(clip_key), row.get(genre_key)
        if not isinstance(clip, str) or not clip.strip():
            refused.append(f"row {number}: no clip")
        elif not isinstance(genre, str) or not genre.strip():
            refused.append(f"row {number} ({clip.strip()}): no genre")
        elif len(clip.strip()) > CLIP_LENGTH or len(genre.strip()) > GENRE_LENGTH:
            # the store would cut them, and a cut clip id matches no prediction
            refused.append(f"row {number}: clip or genre longer than the store keeps")
        else:
            pairs.append((clip.strip(), genre.strip()))
    return pairs, refused


def read_feedback(path: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """``parse_feedback`` of a file, refusing one over MAX_FEEDBACK_BYTES before reading it."""
    try:
        size = path.stat().st_size
        if size > MAX_FEEDBACK_BYTES:
            raise FeedbackError(f"{path}: {size} bytes is over the {MAX_FEEDBACK_BYTES}-byte limit")
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise FeedbackError(f"{path}: cannot read ({error.strerror or error})") from error
    except UnicodeDecodeError as error:
        raise FeedbackError(f"{path}: not UTF-8 text ({error.reason})") from error
    return parse_feedback(text, str(path))


def record_feedback(
    store: MonitoringStore, pairs: list[tuple[str, str]], source: str, refused: list[str]
) -> FeedbackReport:
    """Store every pair as a label; a local path is matched as given, else as absolute."""
    absolute = {clip: str(Path(clip).resolve()) for clip, _ in pairs if "://" not in clip}
    known = store.predicted_clip_ids([*(clip for clip, _ in pairs), *absolute.values()])
    rows = []
    report = FeedbackReport(source=source, refused=list(refused))
    for clip, genre in pairs:
        if clip not in known and absolute.get(clip) in known:
            clip = absolute[clip]
        elif clip not in known:
            report.unknown.append(clip)
        rows.append({"clip_id": clip, "genre": genre, "source": source})
    report.stored = store.insert_labels(rows)
    return report
