"""``python -m genreops.data.warm``: compile numba's cached functions once, in one process,
before anything runs them in parallel (``make setup`` and the Compose image run it).

Numba caches a ``@guvectorize`` function as two files, its kernel and its wrapper; processes
that compile the same function at the same moment can leave a kernel of one and a wrapper of
the other, and every later process that loads the pair crashes with a segmentation fault
(numba issue #10128, open in numba 0.62). librosa's ``localmax`` / ``localmin`` (beat tracking,
onset peaks) are such functions, and the platform runs feature extraction in many processes
at once (Triton's model instances, Dask workers, the test suite's servers). Compiling them
here first means those processes only ever load a complete, matching cache. Cache files left
by an earlier run are removed first, so a broken pair is rebuilt rather than kept.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

CACHE_SUFFIXES = (".nbi", ".nbc")


def _cache_roots() -> list[Path]:
    """Where numba keeps the caches of librosa's and genreops' functions."""
    import librosa
    from numba.core import config

    import genreops

    packages = [Path(librosa.__file__).parent, Path(genreops.__file__).parent]
    cache_dir = getattr(config, "CACHE_DIR", "")  # set from NUMBA_CACHE_DIR at import
    if cache_dir:  # NUMBA_CACHE_DIR mirrors each source folder below it
        base = Path(cache_dir)
        return [base / str(package.resolve()).lstrip("/") for package in packages]
    return packages


def clear_caches() -> int:
    """Remove the numba cache files of librosa and genreops; returns how many."""
    removed = 0
    for root in _cache_roots():
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            if path.suffix in CACHE_SUFFIXES and path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def warm() -> float:
    """Run every cached numba function the platform uses, on float32 and float64 audio;
    returns the seconds it took."""
    import librosa
    import numpy as np

    from genreops.data.features import SAMPLE_RATE, extract_features

    started = time.perf_counter()
    seconds = 6.0
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    clicks = (np.sin(2 * np.pi * 2.0 * t) > 0.99).astype(np.float64)  # a beat to track
    signal = 0.3 * np.sin(2 * np.pi * 220.0 * t) + 0.5 * clicks
    for samples in (signal.astype(np.float32), signal):
        extract_features(samples, SAMPLE_RATE)
        librosa.beat.beat_track(y=samples, sr=SAMPLE_RATE)
        librosa.onset.onset_detect(y=samples, sr=SAMPLE_RATE)
    return time.perf_counter() - started


def main() -> int:
    removed = clear_caches()
    took = warm()
    print(f"numba caches: {removed} old files removed, compiled in {took:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
