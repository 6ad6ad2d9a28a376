"""Feature matrices of clean traffic and of realistic shifts, for the drift benchmark.

Everything is rendered here (nothing can be downloaded): the synthetic corpus for the training
reference and the clean stream, then shifted audio of several kinds, each as the platform's
feature vectors (the preprocessor's 30 s window, ``genreops.data.features.extract_features``):

- ``recording``: the synthetic ``drift=True`` corpus (phone-like band limit, noise, hum, reverb);
- ``held_out``: a genre the model never saw (the reference then leaves it out);
- ``quieter``: clean clips 18 dB lower; ``eq``: a 3 kHz low-pass (dull, lo-fi);
  ``noise``: white noise added at 15 dB SNR (hiss, a live room);
- ``faster``: clips played 1.25x fast (pitch and tempo up); ``fusion``: two genres mixed;
- ``foreign`` (clearly not music): espeak-ng speech in several voices, sox white/pink/brown
  noise, sine/square tones and sweeps.

Results are cached by their parameters under ``bench/out/shifts/`` (about 5 min of CPU on two
cores the first time).

    .venv/bin/python bench/shifts.py --per-genre 100      # builds the cache, prints a summary
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy import signal
from tqdm import tqdm

from genreops.data.features import FEATURE_NAMES, SAMPLE_RATE, extract_features
from genreops.data.genres import GENRES
from genreops.data.synth import clip_seed, render_clip

CACHE = Path(__file__).parent / "out" / "shifts"
SECONDS = 30.0
HELD_OUT = "reggae"
SHIFTS = ("recording", "held_out", "quieter", "eq", "noise", "faster", "fusion")
VERSION = 1  # bump when a recipe changes

Job = tuple[str, int, str, int]  # (kind, clip index, genre, seed)

SENTENCES = (
    "The quick brown fox jumps over the lazy dog while the radio plays in the kitchen.",
    "Please leave a message after the tone and we will call you back as soon as we can.",
    "Good evening, here is the news. Markets were calm today and the weather stays mild.",
    "Turn left at the next junction, then continue for two hundred metres to your destination.",
    "Chapter one. It was a bright cold day in April, and the clocks were striking thirteen.",
    "Welcome to the lecture on signal processing: today we discuss the short time Fourier "
    "transform and its window.",
)
VOICES = ("en", "en-us", "en+f3", "en+m3", "de", "fr", "es", "en+f5")


def _features(y: np.ndarray) -> np.ndarray:
    return extract_features(np.asarray(y, dtype=np.float32)).astype(np.float32)


def _speed(y: np.ndarray, factor: float) -> np.ndarray:
    return signal.resample_poly(y, 4, round(4 * factor)).astype(np.float32)


def _transform(kind: str, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if kind == "quieter":
        return y * np.float32(10 ** (-18 / 20))
    if kind == "eq":
        sos = signal.butter(4, 3000, "lowpass", fs=SAMPLE_RATE, output="sos")
        return signal.sosfilt(sos, y).astype(np.float32)
    if kind == "noise":
        power = float(np.mean(y.astype(np.float64) ** 2))
        noise = rng.standard_normal(len(y)) * np.sqrt(power / 10 ** (15 / 10))
        return np.clip(y + noise, -1, 1).astype(np.float32)
    if kind == "faster":
        return _speed(y, 1.25)
    return y


def _one(job: Job) -> np.ndarray:
    kind, index, genre, seed = job
    rng = np.random.default_rng([seed, index])
    if kind == "recording":
        return _features(render_clip(genre, seed, SECONDS, drift=True))
    if kind == "fusion":
        other = GENRES[(GENRES.index(genre) + 1 + index % (len(GENRES) - 1)) % len(GENRES)]
        mix = render_clip(genre, seed, SECONDS) + render_clip(other, seed + 1, SECONDS)
        return _features(np.clip(0.7 * mix, -1, 1))
    seconds = SECONDS * 1.25 if kind == "faster" else SECONDS
    return _features(_transform(kind, render_clip(genre, seed, seconds), rng))


def _foreign(index: int, folder: Path) -> tuple[str, np.ndarray]:
    """Clip ``index`` of the clearly-foreign set, made by espeak-ng or sox."""
    rng = np.random.default_rng([7, index])
    path = folder / f"foreign-{index}.wav"
    kind = ("speech", "noise", "tone")[index % 3]
    rate = str(SAMPLE_RATE)
    if kind == "speech":
        text = " ".join(SENTENCES[(index + i) % len(SENTENCES)] for i in range(5))
        voice = VOICES[index % len(VOICES)]
        speed = str(int(rng.integers(130, 190)))
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", speed, "-w", str(path), text],
            check=True,
            capture_output=True,
        )
    elif kind == "noise":
        colour = ("whitenoise", "pinknoise", "brownnoise")[index // 3 % 3]
        gain = f"{-rng.uniform(3, 20):.1f}"
        subprocess.run(
            ["sox", "-n", "-r", rate, "-b", "16", str(path), "synth", "30", colour, "gain", gain],
            check=True,
            capture_output=True,
        )
    else:
        shape = ("sine", "square", "sine", "sawtooth")[index // 3 % 4]
        low, high = sorted(rng.uniform(80, 4000, size=2))
        sweep = f"{low:.0f}-{high:.0f}" if index // 3 % 2 else f"{low:.0f}"
        subprocess.run(
            ["sox", "-n", "-r", rate, "-b", "16", str(path), "synth", "30", shape, sweep,
             "gain", "-6"],
            check=True,
            capture_output=True,
        )  # fmt: skip
    y, rate_read = sf.read(path, dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    if rate_read != SAMPLE_RATE:
        y = signal.resample_poly(y, SAMPLE_RATE, rate_read).astype(np.float32)
    return kind, _features(y[: int(SECONDS * SAMPLE_RATE)])


def _foreign_job(args: tuple[int, str]) -> tuple[str, np.ndarray]:
    return _foreign(args[0], Path(args[1]))


def _run(func: Callable, jobs: Sequence, desc: str, workers: int) -> list:
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(func, jobs, chunksize=4), total=len(jobs), desc=desc))


def _cached(name: str, params: dict, build: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    key = hashlib.sha256(json.dumps({**params, "v": VERSION}, sort_keys=True).encode())
    path = CACHE / f"{name}-{key.hexdigest()[:12]}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    frame = build()
    CACHE.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return frame


def _frame(rows: list[np.ndarray], labels: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(np.vstack(rows), columns=list(FEATURE_NAMES))
    frame.insert(0, "label", list(labels))
    return frame


def corpus(per_genre: int, seed: int, workers: int = 2) -> pd.DataFrame:
    """Clean synthetic clips' features (``label`` = genre), ``per_genre`` of each genre."""

    def build() -> pd.DataFrame:
        jobs = [("clean", i, g, clip_seed(seed, i)) for i in range(per_genre) for g in GENRES]
        return _frame(_run(_one, jobs, f"clean seed {seed}", workers), [j[2] for j in jobs])

    return _cached("clean", {"per_genre": per_genre, "seed": seed}, build)


def shifted(kind: str, per_genre: int, seed: int = 30, workers: int = 2) -> pd.DataFrame:
    """``per_genre`` clips per genre of one shift (``held_out``: the held-out genre only)."""
    if kind == "held_out":
        return _held_out(per_genre, seed, workers)

    def build() -> pd.DataFrame:
        jobs = [(kind, i, g, clip_seed(seed, i)) for i in range(per_genre) for g in GENRES]
        return _frame(_run(_one, jobs, kind, workers), [j[2] for j in jobs])

    return _cached(kind, {"per_genre": per_genre, "seed": seed}, build)


def _held_out(per_genre: int, seed: int, workers: int) -> pd.DataFrame:
    def build() -> pd.DataFrame:
        count = per_genre * len(GENRES)
        jobs = [("clean", i, HELD_OUT, clip_seed(seed, i)) for i in range(count)]
        return _frame(_run(_one, jobs, "held_out", workers), [HELD_OUT] * count)

    return _cached("held_out", {"per_genre": per_genre, "seed": seed, "genre": HELD_OUT}, build)


def foreign(count: int, workers: int = 2) -> pd.DataFrame:
    """Clearly foreign clips (``label`` = speech, noise or tone)."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed for the foreign clips: `make setup` installs it")

    def build() -> pd.DataFrame:
        with tempfile.TemporaryDirectory() as tmp:
            done = _run(_foreign_job, [(i, tmp) for i in range(count)], "foreign", workers)
        return _frame([f for _, f in done], [k for k, _ in done])

    return _cached("foreign", {"count": count}, build)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-genre", type=int, default=100, help="reference and clean clips")
    parser.add_argument("--shift-per-genre", type=int, default=10)
    parser.add_argument("--foreign", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    sets = {
        "reference": corpus(args.per_genre, 0, args.workers),
        "clean": corpus(args.per_genre, 1, args.workers),
        **{k: shifted(k, args.shift_per_genre, workers=args.workers) for k in SHIFTS},
        "foreign": foreign(args.foreign, args.workers),
    }
    for name, frame in sets.items():
        print(f"{name:10s} {len(frame):5d} rows  labels: {sorted(set(frame['label']))[:6]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
