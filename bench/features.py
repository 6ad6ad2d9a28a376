"""Feature-extraction speed: the per-feature librosa style against ``genreops.data.features``.

Both run on the same clips, in one process, on one thread (BLAS/OpenMP/numba pinned before
numpy is imported), after one warm-up clip each:

- baseline: every GTZAN feature by its own high-level librosa call on the waveform, as the
  public table defines it (chroma_stft, rms, spectral_centroid, spectral_bandwidth,
  spectral_rolloff, zero_crossing_rate, the harmonic and percussive waveforms of
  effects.hpss (computed once per clip), beat_track, mfcc), each recomputing its own STFT;
  mean and np.var over the whole array: 57 values per clip;
- ours: ``genreops.data.features.extract_features`` (one STFT; all its values, the 57 included).

Agreement is reported per column over the clips: the median relative difference, except for
columns that sit near zero (the waveform means, and any column whose reference values change
sign across the clips), which are compared in units of the
column's spread across the clips: |ours - reference| / std(reference).

Clips are 30 s of music-like audio: ``genreops.data.synth.render_clip`` over the 10 genres when that
module is there, else drums + bass + chords + noise made here with numpy. Prints a results block
and adds it to the "Features" section of ``bench/RESULTS.md`` (``--no-record`` to skip).

    .venv/bin/python bench/features.py               # 8 clips of 30 s
    .venv/bin/python bench/features.py --clips 20 --seconds 30
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_name] = "1"  # before numpy (and BLAS) is loaded: one thread, like one Dask slot

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import datetime  # noqa: E402

import librosa  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402

import genreops  # noqa: E402
from genreops.data.features import FEATURE_NAMES, SCHEMA_HASH, extract_features  # noqa: E402
from machine import RESULTS, describe, record  # noqa: E402

SR = 22050
SECTION = "## Features"
SECTION_INTRO = (
    "Per-clip feature extraction, one thread: the per-feature librosa style (each feature by its\n"
    "own librosa call, HPSS via effects.hpss, tempo via beat_track) against\n"
    "`genreops.data.features.extract_features` (one STFT per clip). Goal: >= 25x the baseline's\n"
    "throughput and <= 60 ms per 30 s clip. Written by `bench/features.py`; newest last.\n"
)
GOAL_RATIO = 25.0
GOAL_MS = 60.0
GTZAN_COUNT = 57  # chroma .. perceptr (16), tempo, mfcc1..20 mean/var (40)


# ------------------------------------------------------------------------------------- clips


def make_clips(count: int, seconds: float, seed: int) -> tuple[list[np.ndarray], str]:
    """Music-like clips and where they came from."""
    try:
        from genreops.data.genres import GENRES
        from genreops.data.synth import render_clip
    except ImportError:
        rng = np.random.default_rng(seed)
        return [_numpy_clip(rng, seconds) for _ in range(count)], "numpy drums+bass+chords+noise"
    clips = [render_clip(GENRES[i % len(GENRES)], seed + i, seconds) for i in range(count)]
    return clips, f"genreops.data.synth.render_clip over {min(count, len(GENRES))} genres"


def _numpy_clip(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Kick/snare/hat pattern, a bass line and chords at a random tempo and key, plus noise."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    beat = 60.0 / rng.uniform(70, 160)
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    y = np.zeros(n)
    tk = np.arange(int(0.3 * SR)) / SR
    kick = np.sin(2 * np.pi * (45 + 90 * np.exp(-35 * tk)) * tk) * np.exp(-10 * tk)
    snare = (rng.standard_normal(tk.size) + 0.5 * np.sin(2 * np.pi * 180 * tk)) * np.exp(-18 * tk)
    hat = rng.standard_normal(int(0.04 * SR)) * np.exp(-90 * np.arange(int(0.04 * SR)) / SR)
    for k, start in enumerate(np.arange(0, seconds, beat / 2)):
        at = int(start * SR)
        for sound, gain in (
            (kick if k % 4 == 0 else snare if k % 4 == 2 else None, 0.8),
            (hat, 0.25),
        ):
            if sound is None:
                continue
            end = min(n, at + sound.size)
            y[at:end] += gain * sound[: end - at]
    progression = (0, 5, 7, 3)
    bar = 4 * beat
    step = ((t // bar).astype(int)) % len(progression)
    semis = np.array(progression)[step]
    for offset in (0, 4, 7):
        f = root * 2 * 2 ** ((semis + offset) / 12)
        phase = 2 * np.pi * np.cumsum(f) / SR
        y += 0.12 * (np.sin(phase) + 0.4 * np.sin(2 * phase) + 0.2 * np.sin(3 * phase))
    bass_phase = 2 * np.pi * np.cumsum(root / 2 * 2 ** (semis / 12)) / SR
    y += 0.3 * np.sign(np.sin(bass_phase)) * (0.6 + 0.4 * np.cos(2 * np.pi * t / beat))
    y += 0.02 * rng.standard_normal(n)
    return (0.8 * y / np.abs(y).max()).astype(np.float32)


# ---------------------------------------------------------------------------- implementations


def baseline_features(y: np.ndarray, sr: int = SR) -> np.ndarray:
    """The 57 GTZAN values, each feature by its own librosa call on the waveform."""
    out: list[float] = []

    def put(series: np.ndarray) -> None:
        out.extend((float(np.mean(series)), float(np.var(series))))

    put(librosa.feature.chroma_stft(y=y, sr=sr))
    put(librosa.feature.rms(y=y))
    put(librosa.feature.spectral_centroid(y=y, sr=sr))
    put(librosa.feature.spectral_bandwidth(y=y, sr=sr))
    put(librosa.feature.spectral_rolloff(y=y, sr=sr))
    put(librosa.feature.zero_crossing_rate(y))
    harmonic, percussive = librosa.effects.hpss(y)  # the table's harmony / perceptr
    put(harmonic)
    put(percussive)
    tempo, _ = librosa.beat.beat_track(y=y, sr=sr)
    out.append(float(np.atleast_1d(tempo)[0]))  # librosa 0.11 returns a 1-element array
    for row in librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20):
        put(row)
    return np.asarray(out, dtype=np.float32)


@dataclass
class Timing:
    name: str
    wall: list[float]
    cpu: list[float]
    outputs: list[np.ndarray]

    @property
    def ms_wall(self) -> float:
        return 1000 * float(np.mean(self.wall))

    @property
    def ms_cpu(self) -> float:
        return 1000 * float(np.mean(self.cpu))

    @property
    def clips_per_s(self) -> float:
        return len(self.wall) / float(np.sum(self.wall))


def run(name: str, fn: Callable[[np.ndarray], np.ndarray], clips: Sequence[np.ndarray]) -> Timing:
    fn(clips[0])  # warm-up: lazy imports, numba cache, filter banks
    timing = Timing(name, [], [], [])
    for clip in clips:
        wall, cpu = time.perf_counter(), time.process_time()
        timing.outputs.append(fn(clip))
        timing.cpu.append(time.process_time() - cpu)
        timing.wall.append(time.perf_counter() - wall)
        print(f"  {name}: {1000 * timing.wall[-1]:8.1f} ms", flush=True)
    return timing


# ----------------------------------------------------------------------------------- report


WAVEFORM_MEANS = ("harmony_mean", "perceptr_mean")


def column_agreement(
    ours: np.ndarray, reference: np.ndarray, names: Sequence[str]
) -> list[tuple[str, float, bool]]:
    """Per column: (name, median difference over the clips, in spread units?).

    Relative difference, except for columns that sit near zero: the waveform means, and any
    column whose reference changes sign over the clips; those are compared
    in units of the column's spread over the clips, |ours - ref| / std(ref). A column with no
    spread at all (one clip) falls back to the absolute difference.
    """
    rows = []
    for j, name in enumerate(names):
        a, b = ours[:, j].astype(np.float64), reference[:, j].astype(np.float64)
        spread = float(np.std(b))
        near_zero = name in WAVEFORM_MEANS or bool(b.min() < 0 < b.max())
        if near_zero:
            diff = np.abs(a - b) / (spread if spread > 0 else 1.0)
        else:
            diff = np.abs(a - b) / np.maximum(np.abs(b), 1e-12)
        rows.append((name, float(np.median(diff)), near_zero))
    return rows


def agreement(base: Timing, ours: Timing) -> list[str]:
    """How far our values are from the baseline's on the 57 features both compute."""
    names = FEATURE_NAMES[:GTZAN_COUNT]
    a = np.vstack([o[:GTZAN_COUNT] for o in ours.outputs]).astype(np.float64)
    b = np.vstack(base.outputs).astype(np.float64)
    rows = column_agreement(a, b, names)
    by_name = {name: (diff, spread) for name, diff, spread in rows}

    def show(name: str) -> str:
        diff, spread = by_name[name]
        return f"{name} {diff:.1e}{' spread' if spread else ''}"

    hpss = [n for n in names if n.startswith(("harmony", "perceptr"))]
    others = [row for row in rows if row[0] not in hpss and row[0] != "tempo"]
    worst = max(others, key=lambda row: row[1])
    tempo = names.index("tempo")
    return [
        "per-column agreement: median over clips of |ours - librosa| / |librosa|, or / the "
        "column's std over clips where marked 'spread' (near-zero columns)",
        "harmony / perceptr (effects.hpss waveforms): " + ", ".join(show(n) for n in hpss),
        f"worst other column: {show(worst[0])}; max over all clips and the other "
        f"{len(others)} columns: {_max_other(a, b, names, hpss):.1e}",
        f"tempo equal to beat_track on {int(np.sum(np.abs(a[:, tempo] - b[:, tempo]) < 1e-6))}"
        f"/{len(a)} clips (max difference {np.abs(a - b)[:, tempo].max():.2f} BPM)",
        "all columns: " + ", ".join(show(name) for name, _, _ in rows if name != "tempo"),
    ]


def _max_other(a: np.ndarray, b: np.ndarray, names: Sequence[str], hpss: list[str]) -> float:
    """Largest single difference outside HPSS and tempo, relative or in spread units."""
    rows = column_agreement(a, b, names)
    worst = 0.0
    for j, (name, _, near_zero) in enumerate(rows):
        if name in hpss or name == "tempo":
            continue
        spread = float(np.std(b[:, j])) or 1.0
        scale = spread if near_zero else np.maximum(np.abs(b[:, j]), 1e-12)
        worst = max(worst, float(np.max(np.abs(a[:, j] - b[:, j]) / scale)))
    return worst


def versions() -> str:
    return (
        f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"librosa {librosa.__version__}, numba {numba.__version__}, genreops "
        f"{genreops.__version__} (schema {SCHEMA_HASH})"
    )


def load_average() -> float:
    """Other work on the machine slows wall time (not CPU time): say how busy it was."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def block(base: Timing, ours: Timing, source: str, seconds: float, load_start: float) -> str:
    ratio_wall = base.ms_wall / ours.ms_wall
    ratio_cpu = base.ms_cpu / ours.ms_cpu
    met = ratio_wall >= GOAL_RATIO and ours.ms_wall <= GOAL_MS
    stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    rows = [
        "| implementation | features | clips/s | ms/clip (wall) | ms/clip (CPU) |",
        "|---|---:|---:|---:|---:|",
    ]
    for timing, count in ((base, GTZAN_COUNT), (ours, len(FEATURE_NAMES))):
        rows.append(
            f"| {timing.name} | {count} | {timing.clips_per_s:.2f} | {timing.ms_wall:.1f} "
            f"| {timing.ms_cpu:.1f} |"
        )
    lines = [
        f"### {stamp}: {len(ours.wall)} clips x {seconds:g} s, 1 thread",
        "",
        f"- clips: {source}",
        f"- machine: {describe()}; 1-min load average {load_start:.2f} at start, "
        f"{load_average():.2f} at end",
        f"- versions: {versions()}",
        "",
        *rows,
        "",
        f"- speed-up: **{ratio_wall:.1f}x** wall ({ratio_cpu:.1f}x CPU time); goal >= "
        f"{GOAL_RATIO:g}x and <= {GOAL_MS:g} ms/clip: {'met' if met else 'NOT met'}",
        f"- ours per clip: median {1000 * np.median(ours.wall):.1f} ms, "
        f"fastest {1000 * min(ours.wall):.1f} ms, slowest {1000 * max(ours.wall):.1f} ms",
        *(f"- {line}" for line in agreement(base, ours)),
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8, help="clips per implementation")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-record", action="store_true", help="do not touch bench/RESULTS.md")
    args = parser.parse_args(argv)

    clips, source = make_clips(args.clips, args.seconds, args.seed)
    load = load_average()
    print(f"{len(clips)} clips of {args.seconds:g} s from {source}")
    base = run("per-feature librosa", baseline_features, clips)
    ours = run("genreops.features", extract_features, clips)
    text = block(base, ours, source, args.seconds, load)
    print()
    print(text)
    if not args.no_record:
        record(text, SECTION, SECTION_INTRO)
        print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
