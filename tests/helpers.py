"""Test data builders shared by the test layers (importable: tests/ is on sys.path)."""

from __future__ import annotations

import socket

import numpy as np
import pandas as pd


def synthetic_feature_frame(
    per_genre: int = 12,
    genres: tuple[str, ...] = ("blues", "classical", "metal", "pop"),
    names: tuple[str, ...] | None = None,
    seed: int = 0,
    separation: float = 2.0,
) -> pd.DataFrame:
    """A feature table in the documented shape whose genres are learnable (shifted means)."""
    from genreops.features import FEATURE_NAMES

    columns = list(names or FEATURE_NAMES)
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, separation, size=(len(genres), len(columns)))
    rows, labels, ids = [], [], []
    for g, genre in enumerate(genres):
        rows.append(centres[g] + rng.normal(size=(per_genre, len(columns))))
        labels += [genre] * per_genre
        ids += [f"{genre}/{genre}.{i:05d}.wav" for i in range(per_genre)]
    frame = pd.DataFrame(np.vstack(rows).astype(np.float32), columns=columns)
    frame.insert(0, "genre", labels)
    frame.insert(0, "clip_id", ids)
    return frame


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
