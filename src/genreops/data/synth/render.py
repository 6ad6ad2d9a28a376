"""One clip: a genre's arrangement, a borrowed part now and then, the mix, optionally drifted."""

from __future__ import annotations

import math

import numpy as np

from genreops.data.genres import GENRES
from genreops.data.synth.arrangement import _Clip
from genreops.data.synth.dsp import F32, SR, Array, _db
from genreops.data.synth.mixing import _mix, _record_badly
from genreops.data.synth.styles import _NEIGHBOURS, _STYLES, _TEMPO, BORROW_PROBABILITY


def _genre_index(genre: str) -> int:
    try:
        return GENRES.index(genre)
    except ValueError:
        raise ValueError(f"unknown genre {genre!r}: expected one of {', '.join(GENRES)}") from None


def clip_seed(seed: int, index: int) -> int:
    """The seed of clip ``index`` in a corpus rendered with ``seed`` (what the manifest records)."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 32 | int(state[1])


def render_clip(genre: str, seed: int, seconds: float = 30.0, *, drift: bool = False) -> Array:
    """One clip of ``genre`` as float32 mono in [-1, 1] at SAMPLE_RATE, a pure function of its args.

    ``drift=True`` renders the same music (same seed, same notes) under different recording
    conditions. Unknown genres raise ValueError.
    """
    g = _genre_index(genre)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    n = round(seconds * SR) if math.isfinite(seconds) else 0
    if n < 1:
        raise ValueError(f"seconds must be a finite length of at least one sample, got {seconds}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, g]))
    lo, hi, swing = _TEMPO[genre]
    clip = _Clip(rng, n, float(rng.uniform(lo, hi)), swing=swing * rng.uniform(0.5, 1.5))
    tracks, master = _STYLES[genre](clip)
    if rng.random() < BORROW_PROBABILITY:
        # Genres bleed into each other: one part of this clip comes from a neighbouring genre.
        options = _NEIGHBOURS[genre]
        other = options[int(rng.integers(len(options)))]
        theirs, _ = _STYLES[other](clip)
        shared = sorted(set(tracks) & set(theirs) - {"harmony2"})
        role = shared[int(rng.integers(len(shared)))]
        tracks[role] = theirs[role]
    y = _mix(tracks, master, rng, n) * F32(_db(-rng.uniform(0.0, 6.0)))
    if drift:
        y = _record_badly(y, np.random.default_rng(np.random.SeedSequence([seed, g, 1])))
    return np.clip(y, -1.0, 1.0).astype(F32)
