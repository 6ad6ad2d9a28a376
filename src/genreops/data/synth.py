"""A deterministic stand-in for GTZAN: ten genres of synthetic music, rendered from a seed.

Real audio cannot be downloaded everywhere genreops runs, so demos, tests and benchmarks render
their corpus. Each genre has its own tempo range, drum pattern, instruments, harmony and
dynamics (four-on-the-floor disco, one-drop reggae, swung ride and walking bass in jazz, a
12-bar dominant-seventh shuffle in blues, ...); every clip draws its key, tempo, instrument mix,
levels and pattern variants from its own seeded generator, and a share of clips borrow elements
from a neighbouring genre, so a good classifier does well but not perfectly.

``drift=True`` renders the same music (same seed, same notes) as if recorded under other
conditions: band-limited like a phone or a cheap microphone, slightly slowed (pitch and tempo),
with background noise and hum, a room reverb and a lower level. Feature distributions move
clearly, which is what the drift gate is tested against.

Determinism: a clip is a pure function of ``(genre, seed, seconds, drift)``; ``render_corpus``
derives each clip's seed from ``(corpus seed, clip index)`` with ``numpy.random.SeedSequence``,
so files are bit-identical across runs, worker counts and rendering order (with the same numpy
and scipy builds: vectorised math may differ in the last bit between CPUs).

Speed: everything is vectorised per note or per track (harmonics by recursion, drum one-shots
rendered once per clip, repeated notes cached); a 30 s clip takes about 0.2 s on one core.
Separability and drift figures live in ``bench/RESULTS.md`` (``bench/synth.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import soundfile as sf
from scipy import signal

from genreops.core.files import atomic_target, atomic_write
from genreops.data.audio import SAMPLE_RATE
from genreops.data.genres import GENRES

__all__ = [
    "GENERATOR_VERSION",
    "MANIFEST_NAME",
    "SAMPLE_RATE",
    "clip_seed",
    "render_clip",
    "render_corpus",
]

logger = logging.getLogger(__name__)

# Bump whenever a change alters rendered samples: manifests record it, cached corpora compare it.
GENERATOR_VERSION = "1"
MANIFEST_NAME = "manifest.json"

SR = SAMPLE_RATE
NYQ = SR / 2
F32 = np.float32
Array = np.ndarray

# Velocity letters in drum/rhythm patterns; '.' is a rest.
_VEL = {"X": 1.0, "x": 0.75, "o": 0.45, "g": 0.25}


def _hz(midi: float) -> float:
    return float(440.0 * 2.0 ** ((midi - 69.0) / 12.0))


def _db(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def _sos(kind: str, freq: float | tuple[float, float], order: int = 2) -> Array:
    """Butterworth sections; cutoffs are clamped inside (0, Nyquist) so random params stay legal.

    Cutoffs snap to 1/48 octave so designs repeat and come from a cache (designing costs more
    than filtering a short buffer).
    """
    if isinstance(freq, tuple):
        lo, hi = (_snap(f) for f in freq)
        return _design(kind, (lo, max(hi, _snap(lo * 1.1))), order)
    return _design(kind, _snap(freq), order)


def _snap(freq: float) -> float:
    freq = min(max(freq, 20.0), NYQ * 0.95)
    return float(2.0 ** (round(math.log2(freq) * 48) / 48))


@lru_cache(maxsize=4096)
def _design(kind: str, freq: float | tuple[float, float], order: int) -> Array:
    return signal.butter(order, freq, kind, fs=SR, output="sos")  # sosfilt never writes to it


def _filt(x: Array, kind: str, freq: float | tuple[float, float], order: int = 2) -> Array:
    return signal.sosfilt(_sos(kind, freq, order), x).astype(x.dtype, copy=False)


def _rms(x: Array) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _soft(x: Array, drive: float) -> Array:
    """tanh saturation normalised so a full-scale input stays near full scale."""
    return (np.tanh(x * drive) / math.tanh(drive)).astype(x.dtype, copy=False)


# --------------------------------------------------------------------------------------------
# Oscillators and note synthesis (per note, short buffers, float64 then cached as float32)
# --------------------------------------------------------------------------------------------


def _phase(
    freq: float,
    n: int,
    *,
    vib: tuple[float, float] = (0.0, 0.0),
    bend: tuple[float, float] = (0.0, 0.05),
) -> Array:
    """Cycles elapsed per sample, with optional vibrato (rate Hz, depth) and a bend into pitch."""
    t = np.arange(n) / SR
    rate, depth = vib
    semis, tau = bend
    if depth == 0.0 and semis == 0.0:
        return freq * t
    f = np.full(n, freq)
    if depth:
        # Vibrato fades in over the first 0.3 s, as players do.
        f *= 1.0 + depth * np.minimum(t / 0.3, 1.0) * np.sin(2 * np.pi * rate * t)
    if semis:
        f *= 2.0 ** (semis * np.exp(-t / tau) / 12.0)
    return np.cumsum(f) / SR


def _additive(
    ph: Array, amps: Sequence[float], env1: Array | None = None, ratio: Array | None = None
) -> Array:
    """Sum of harmonics a_k·sin(2πk·ph) by the Chebyshev recursion (no per-harmonic sin calls).

    With ``env1``/``ratio`` harmonic k decays as env1·ratio^(k-1): higher partials die faster, as in
    a plucked or struck string.
    """
    x = 2 * np.pi * ph
    s = np.sin(x)
    c = 2 * np.cos(x)
    prev = np.zeros_like(s)
    e = env1
    y = amps[0] * (s if e is None else s * e)
    for a in amps[1:]:
        prev, s = s, c * s - prev
        if e is not None and ratio is not None:
            e = e * ratio
        if a:
            y += a * (s if e is None else s * e)
    return y


def _n_harm(freq: float, k_max: int) -> int:
    return max(1, min(k_max, int(NYQ * 0.9 / freq)))


def _saw(ph: Array) -> Array:
    return 2.0 * (ph % 1.0) - 1.0


def _ar(n_on: int, attack: float, release: float, n_total: int) -> Array:
    """Attack ramp, sustain at 1 until note-off, linear release; length n_total."""
    env = np.ones(n_total)
    na = max(1, int(attack * SR))
    env[: min(na, n_total)] = np.linspace(0, 1, na)[: min(na, n_total)]
    nr = max(1, n_total - n_on)
    if n_total > n_on:
        env[n_on:] = np.linspace(1, 0, nr)
    return env


Synth = Callable[[float, int], Array]


@dataclass
class _Instr:
    """A note synth plus a per-clip cache: chords and riffs repeat, so most notes render once."""

    synth: Synth
    cache: dict[tuple[int, int], Array]

    def note(self, midi: float, n: int) -> Array:
        key = (round(midi * 100), n)
        buf = self.cache.get(key)
        if buf is None:
            buf = self.synth(_hz(midi), n).astype(F32)
            self.cache[key] = buf
        return buf


def _instr(synth: Synth) -> _Instr:
    return _Instr(synth, {})


def pluck(rng: np.random.Generator, *, bright: float, decay: float, twang: float = 0.0) -> _Instr:
    """Plucked string (guitar, bass): the higher the partial, the faster it decays."""
    pos = rng.uniform(0.08, 0.3)
    k_max = int(8 + 16 * bright)
    tilt = 2.0 - 1.2 * bright
    damp = 0.35 * (1.2 - bright)

    def synth(f: float, n_on: int) -> Array:
        n = n_on + int(0.05 * SR)
        t = np.arange(n) / SR
        k = np.arange(1, _n_harm(f, k_max) + 1)
        amps = np.abs(np.sin(np.pi * k * pos)) / k**tilt
        if twang:
            amps[2:6] *= 1 + 2.5 * twang  # the nasal mid partials of a bridge pickup
        tau = decay * (220.0 / max(f, 55.0)) ** 0.4
        env1 = np.exp(-t / tau)
        ratio = np.exp(-t * damp / tau * 3.0)
        ph = _phase(f, n, bend=(0.4 * twang, 0.04))
        y = _additive(ph, amps, env1, ratio)
        y[:20] *= np.linspace(0, 1, 20)
        y[n_on:] *= np.linspace(1, 0, n - n_on)
        return y / max(amps.sum(), 1e-9)

    return _instr(synth)


def piano(rng: np.random.Generator, *, bright: float = 0.5) -> _Instr:
    """Struck strings: two-stage decay, higher partials dying first, unison beating, a hammer."""
    beat = rng.uniform(0.5, 2.5)  # Hz of beating between a note's slightly detuned strings
    k_max = int(6 + 8 * bright)

    def synth(f: float, n_on: int) -> Array:
        n = n_on + int(0.15 * SR)
        t = np.arange(n) / SR
        tau = 1.4 * (262.0 / f) ** 0.5
        k = np.arange(1, _n_harm(f, k_max) + 1)
        partial_decay = np.exp(-t * 0.4 / tau)
        y = _additive(f * t, list(1.0 / k ** (1.6 - bright)), partial_decay, partial_decay)
        y *= (0.6 * np.exp(-t / (0.12 * tau)) + 0.4 * np.exp(-t / tau)) * (
            1.0 + 0.15 * np.sin(2 * np.pi * beat * t)
        )
        y[:40] += rng.standard_normal(40) * 0.3 * np.linspace(1, 0, 40)
        y[n_on:] *= np.linspace(1, 0, n - n_on)
        return y

    return _instr(synth)


def epiano(rng: np.random.Generator) -> _Instr:
    """Rhodes-like FM electric piano: bell-ish attack, mellow sustain."""
    index = rng.uniform(1.0, 3.0)
    tine = rng.uniform(0.05, 0.25)

    def synth(f: float, n_on: int) -> Array:
        n = n_on + int(0.2 * SR)
        t = np.arange(n) / SR
        mod = index * np.exp(-t / 0.25) * np.sin(2 * np.pi * f * t)
        y = np.sin(2 * np.pi * f * t + mod) * np.exp(-t / 1.5)
        y += tine * np.sin(2 * np.pi * min(f * 14.0, NYQ * 0.9) * t) * np.exp(-t / 0.03)
        y[n_on:] *= np.linspace(1, 0, n - n_on)
        return y

    return _instr(synth)


def organ(rng: np.random.Generator) -> _Instr:
    """Drawbar organ: fixed harmonic mix, instant on/off, optional tremolo."""
    bars = rng.uniform(0, 1, 8) * np.array([1, 1, 0.8, 0.6, 0.5, 0.3, 0.3, 0.2])
    bars[0] = 1.0
    trem = rng.choice([0.0, 0.0, 6.5])

    def synth(f: float, n_on: int) -> Array:
        n = n_on + int(0.03 * SR)
        ph = _phase(f, n)
        kk = _n_harm(f, 8)
        y = _additive(ph, list(bars[:kk]))
        if trem:
            y *= 1 + 0.25 * np.sin(2 * np.pi * trem * np.arange(n) / SR)
        return y * _ar(n_on, 0.005, 0.03, n)

    return _instr(synth)


def bowed(rng: np.random.Generator, *, attack: float, voices: int = 2) -> _Instr:
    """Bowed strings / pads: detuned sawtooth voices with vibrato and a slow swell."""
    detune = rng.uniform(0.002, 0.008)
    vib = (rng.uniform(4.5, 6.0), rng.uniform(0.002, 0.006))

    def synth(f: float, n_on: int) -> Array:
        n = n_on + int(0.35 * SR)
        y = np.zeros(n)
        for v in range(voices):
            d = 1.0 + detune * (v - (voices - 1) / 2)
            y += _saw(_phase(f * d, n, vib=vib) + 0.37 * v)
        return y / voices * _ar(n_on, attack, 0.35, n)

    return _instr(synth)


def breathy(rng: np.random.Generator, *, odd: float, vib_depth: float) -> _Instr:
    """Wind lead (flute, sax, harmonica): harmonics with odd/even balance, vibrato, breath noise."""
    vib = (rng.uniform(4.5, 6.5), vib_depth)
    noise_amt = rng.uniform(0.02, 0.1)

    def synth(f: float, n_on: int) -> Array:
        n = n_on + int(0.06 * SR)
        kk = _n_harm(f, 10)
        amps = [(1.0 if k % 2 else 1.0 - odd) / k for k in range(1, kk + 1)]
        y = _additive(_phase(f, n, vib=vib, bend=(-0.3, 0.03)), amps)
        y += noise_amt * rng.standard_normal(n)
        return y * _ar(n_on, 0.03, 0.06, n)

    return _instr(synth)


def voice(rng: np.random.Generator, *, vib_depth: float) -> _Instr:
    """Sung/rapped voice source: a buzzy glottal sawtooth (formants are added per track)."""
    vib = (rng.uniform(4.5, 6.0), vib_depth)

    def synth(f: float, n_on: int) -> Array:
        n = n_on + int(0.05 * SR)
        return _saw(_phase(f, n, vib=vib, bend=(-0.5, 0.05))) * _ar(n_on, 0.02, 0.05, n)

    return _instr(synth)


def powerchord(rng: np.random.Generator, *, mute: float) -> _Instr:
    """Guitar power chord (root, fifth, octave) before the amp; ``mute`` shortens it (palm mute)."""
    detune = rng.uniform(0.001, 0.004)

    def synth(f: float, n_on: int) -> Array:
        n = n_on + int(0.03 * SR)
        y = _saw(_phase(f, n)) + _saw(_phase(f * 1.4983 * (1 + detune), n)) * 0.8
        y += 0.6 * _saw(_phase(f * 2 * (1 - detune), n))
        t = np.arange(n) / SR
        tau = 0.06 + (1 - mute) * 1.5
        return y * np.exp(-t / tau) * _ar(n_on, 0.002, 0.03, n)

    return _instr(synth)


def synthbass(rng: np.random.Generator) -> _Instr:
    """Analog-style bass: saw + square sub, short decay (filtered per track)."""
    sub = rng.uniform(0.2, 0.8)

    def synth(f: float, n_on: int) -> Array:
        n = n_on + int(0.02 * SR)
        ph = _phase(f, n)
        y = _saw(ph) + sub * np.sign(np.sin(np.pi * ph))
        t = np.arange(n) / SR
        return y * (0.5 + 0.5 * np.exp(-t / 0.15)) * _ar(n_on, 0.003, 0.02, n)

    return _instr(synth)


# --------------------------------------------------------------------------------------------
# Drum one-shots (rendered once per clip with that clip's own tuning)
# --------------------------------------------------------------------------------------------


def _decay(n: int, tau: float) -> Array:
    return np.exp(-np.arange(n) / SR / tau)


def kick(rng: np.random.Generator, *, punch: float = 0.5, low: float = 50.0) -> Array:
    n = int(0.45 * SR)
    t = np.arange(n) / SR
    f = low + (low * 2.5 + 60 * punch) * np.exp(-t / rng.uniform(0.02, 0.05))
    y = np.sin(2 * np.pi * np.cumsum(f) / SR) * _decay(n, rng.uniform(0.12, 0.3))
    click = rng.standard_normal(n) * _decay(n, 0.003) * (0.2 + 0.6 * punch)
    return (y + click).astype(F32)


def snare(rng: np.random.Generator, *, tone: float = 0.5, tail: float = 0.15) -> Array:
    n = int(0.4 * SR)
    t = np.arange(n) / SR
    body = np.sin(2 * np.pi * rng.uniform(170, 240) * t) * _decay(n, 0.05) * tone
    noise = _filt(
        rng.standard_normal(n), "bandpass", (rng.uniform(800, 2000), rng.uniform(6000, 9000))
    )
    y = body + noise * _decay(n, tail * rng.uniform(0.7, 1.3))
    return y.astype(F32)


def clap(rng: np.random.Generator) -> Array:
    n = int(0.3 * SR)
    noise = _filt(
        rng.standard_normal(n), "bandpass", (rng.uniform(700, 1200), rng.uniform(3000, 5000))
    )
    env = _decay(n, 0.08)
    for off in (0.0, 0.011, 0.022):
        i = int(off * SR)
        env[i:] += 1.2 * _decay(n - i, 0.006)
    return (noise * env / 2).astype(F32)


def hat(rng: np.random.Generator, *, open_: bool = False) -> Array:
    n = int((0.5 if open_ else 0.12) * SR)
    noise = _filt(rng.standard_normal(n), "highpass", rng.uniform(6000, 8500), order=4)
    tau = rng.uniform(0.15, 0.3) if open_ else rng.uniform(0.012, 0.035)
    return (noise * _decay(n, tau)).astype(F32)


def cymbal(rng: np.random.Generator, *, ride: bool) -> Array:
    """Ride (pingy, metallic partials) or crash (a long noise wash)."""
    n = int((1.2 if ride else 2.0) * SR)
    t = np.arange(n) / SR
    noise = _filt(rng.standard_normal(n), "highpass", rng.uniform(3000, 5000), order=2)
    if not ride:
        return (noise * _decay(n, rng.uniform(0.6, 1.2))).astype(F32)
    base = rng.uniform(300, 500)
    ping = sum(np.sin(2 * np.pi * base * r * t) for r in (1.0, 1.48, 1.97, 2.63, 3.41, 5.23, 7.9))
    ping = _filt(np.asarray(ping), "highpass", 1500.0)
    y = (0.5 * noise + 0.3 * ping) * _decay(n, rng.uniform(0.3, 0.6))
    y[:200] += noise[:200] * np.linspace(1, 0, 200)
    return y.astype(F32)


def rim(rng: np.random.Generator) -> Array:
    n = int(0.08 * SR)
    t = np.arange(n) / SR
    y = np.sin(2 * np.pi * rng.uniform(1200, 1800) * t) * _decay(n, 0.012)
    y += 0.4 * rng.standard_normal(n) * _decay(n, 0.004)
    return y.astype(F32)


def brush(rng: np.random.Generator) -> Array:
    n = int(0.25 * SR)
    noise = _filt(rng.standard_normal(n), "bandpass", (2000, 8000))
    env = np.minimum(np.arange(n) / (0.02 * SR), 1.0) * _decay(n, 0.08)
    return (noise * env).astype(F32)


def tom(rng: np.random.Generator, pitch: float) -> Array:
    n = int(0.5 * SR)
    t = np.arange(n) / SR
    f = pitch * (1 + 0.5 * np.exp(-t / 0.03))
    y = np.sin(2 * np.pi * np.cumsum(f) / SR) * _decay(n, 0.2)
    return (y + 0.1 * rng.standard_normal(n) * _decay(n, 0.01)).astype(F32)


def sub808(rng: np.random.Generator, f: float, length: float) -> Array:
    n = int(length * SR)
    t = np.arange(n) / SR
    fr = f * (1 + 1.0 * np.exp(-t / 0.015))
    y = np.sin(2 * np.pi * np.cumsum(fr) / SR) * _decay(n, length * rng.uniform(0.35, 0.6))
    return _soft(y, rng.uniform(1.0, 3.0)).astype(F32)


# --------------------------------------------------------------------------------------------
# Harmony
# --------------------------------------------------------------------------------------------

QUALITIES: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "min7": (0, 3, 7, 10),
    "9": (0, 4, 10, 14),
    "min9": (0, 3, 10, 14),
    "m7b5": (0, 3, 6, 10),
    "6": (0, 4, 7, 9),
    "5": (0, 7, 12),
    "dim": (0, 3, 6),
    "sus4": (0, 5, 7),
}

SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "harmonic": (0, 2, 3, 5, 7, 8, 11),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "penta_major": (0, 2, 4, 7, 9),
    "penta_minor": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}

Chord = tuple[int, str]  # (root offset from the key in semitones, quality)


def _voicing(root: int, quality: str, low: int) -> list[int]:
    """Chord tones placed at or above ``low`` (closed position)."""
    base = low + ((root - low) % 12)
    return [base + i for i in QUALITIES[quality]]


# --------------------------------------------------------------------------------------------
# One clip's arrangement context
# --------------------------------------------------------------------------------------------

Event = tuple[float, float]  # (time s, velocity)
Note = tuple[float, float, float, float]  # (time s, duration s, midi pitch, velocity)
Figure = Sequence[tuple[float, int, float, float]]  # (beat, semitones over root, beats, velocity)

T = TypeVar("T")


def _one(rng: np.random.Generator, options: Sequence[T]) -> T:
    return options[int(rng.integers(len(options)))]


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[k] for k in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


class _Clip:
    """Tempo grid, key and track helpers for one clip; all randomness comes from ``rng``."""

    def __init__(self, rng: np.random.Generator, n: int, bpm: float, *, swing: float = 0.0) -> None:
        self.rng = rng
        self.n = n
        self.bpm = bpm
        self.beat = 60.0 / bpm
        self.bar = 4 * self.beat
        self.n_bars = math.ceil(n / SR / self.bar) + 1
        self.swing = swing
        self.key = int(rng.integers(0, 12))
        self.human = rng.uniform(0.002, 0.008)
        # Start somewhere inside the song, like a GTZAN excerpt: not always on a downbeat.
        self.offset = float(rng.uniform(0, self.bar)) if rng.random() < 0.7 else 0.0

    def zeros(self) -> Array:
        return np.zeros(self.n, dtype=F32)

    def place(self, track: Array, buf: Array, t: float, gain: float) -> None:
        start = round((t - self.offset) * SR)
        if start >= self.n or start + len(buf) <= 0:
            return
        skip = max(0, -start)
        start = max(0, start)
        end = min(self.n, start + len(buf) - skip)
        track[start:end] += gain * buf[skip : skip + end - start]

    def step_times(self, pattern: str, bar: int) -> Iterator[Event]:
        """Hits of a one-bar pattern: 8/16 steps are straight (or swung), 12 steps are triplets."""
        steps = len(pattern)
        dur = self.bar / steps
        for i, ch in enumerate(pattern):
            if ch == ".":
                continue
            t = bar * self.bar + i * dur
            if self.swing and steps in (8, 16) and i % 2 == 1:
                t += self.swing * dur
            yield t, _VEL[ch]

    def hits(self, patterns: Sequence[str]) -> list[Event]:
        """Pattern i plays in bar i, cycling."""
        out: list[Event] = []
        for b in range(self.n_bars):
            out.extend(self.step_times(patterns[b % len(patterns)], b))
        return out

    def drum(self, track: Array, shot: Array, events: Sequence[Event], gain: float = 1.0) -> None:
        if not events:
            return
        jitter = self.rng.normal(0, self.human, len(events))
        vel = 1 + self.rng.normal(0, 0.08, len(events))
        for (t, v), j, dv in zip(events, jitter, vel, strict=True):
            self.place(track, shot, t + j, gain * v * dv)

    def kit(self, parts: Sequence[tuple[Array, Sequence[str], float]]) -> Array:
        """A drum track from (one-shot, bar patterns, gain) parts."""
        track = self.zeros()
        for shot, patterns, gain in parts:
            self.drum(track, shot, self.hits(patterns), gain)
        return track

    def render(self, ins: _Instr, notes: Sequence[Note]) -> Array:
        """A track of pitched notes; durations snap to 10 ms so repeated notes hit the cache."""
        track = self.zeros()
        if not notes:
            return track
        jitter = self.rng.normal(0, self.human, len(notes))
        for (t, d, m, v), j in zip(notes, jitter, strict=True):
            n_on = max(round(d * 100) * SR // 100, SR // 100)
            self.place(track, ins.note(m, n_on), t + j, v)
        return track

    def chord_midi(self, chord: Chord, low: int) -> list[int]:
        return _voicing(self.key + chord[0], chord[1], low)

    def root_midi(self, chord: Chord, low: int) -> int:
        return low + ((self.key + chord[0] - low) % 12)

    def chord_at(self, prog: Sequence[Chord], bar: int) -> Chord:
        return prog[bar % len(prog)]

    def chord_hits(
        self,
        prog: Sequence[Chord],
        beats: Sequence[float],
        length: float,
        low: int,
        vel: float = 0.5,
        *,
        strum: float = 0.0,
        keep: float = 1.0,
    ) -> list[Note]:
        """Each bar's chord struck on ``beats`` for ``length`` beats; ``keep`` thins the hits."""
        out: list[Note] = []
        for b in range(self.n_bars):
            tones = self.chord_midi(self.chord_at(prog, b), low)
            for pos in beats:
                if keep < 1.0 and self.rng.random() >= keep:
                    continue
                t = b * self.bar + pos * self.beat
                out.extend((t + k * strum, length * self.beat, m, vel) for k, m in enumerate(tones))
        return out

    def bass_line(self, prog: Sequence[Chord], figure: Figure, low: int) -> list[Note]:
        """The same figure over each bar's chord root."""
        out: list[Note] = []
        for b in range(self.n_bars):
            root = self.root_midi(self.chord_at(prog, b), low)
            for pos, interval, beats, vel in figure:
                out.append(
                    (b * self.bar + pos * self.beat, beats * self.beat, root + interval, vel)
                )
        return out

    def melody(
        self,
        scale: Sequence[int],
        low: int,
        high: int,
        rhythms: Sequence[Sequence[float]],
        *,
        rest: float = 0.15,
        leap: float = 0.2,
        motif_bars: int = 2,
        vary: float = 0.3,
    ) -> list[Note]:
        """A motif of ``motif_bars`` bars (rhythms in beats), repeated with variations."""
        rng = self.rng
        pitches = [m for m in range(low, high + 1) if (m - self.key) % 12 in scale]
        idx = len(pitches) // 2
        motif: list[tuple[float, float, int]] = []
        for b in range(motif_bars):
            t = 0.0
            for beats in _one(rng, rhythms):
                if rng.random() >= rest:
                    big = rng.random() < leap
                    step = int(rng.integers(-4, 5)) if big else int(rng.integers(-1, 2))
                    idx = int(np.clip(idx + step, 0, len(pitches) - 1))
                    motif.append((b * self.bar + t * self.beat, beats * self.beat * 0.95, idx))
                t += beats
        out: list[Note] = []
        length = motif_bars * self.bar
        for rep in range(math.ceil(self.n_bars / motif_bars)):
            shift = int(rng.integers(-2, 3)) if rng.random() < vary else 0
            for t, d, i in motif:
                j = int(np.clip(i + shift, 0, len(pitches) - 1))
                out.append((rep * length + t, d, pitches[j], rng.uniform(0.7, 1.0)))
        return out


def _formants(x: Array, rng: np.random.Generator) -> Array:
    """Vowel-like resonances so a buzzy source reads as a voice."""
    f1, f2, f3 = rng.uniform(500, 800), rng.uniform(1000, 1800), rng.uniform(2300, 3000)
    y = _filt(x, "bandpass", (f1 * 0.8, f1 * 1.25), order=1)
    y += 0.6 * _filt(x, "bandpass", (f2 * 0.85, f2 * 1.15), order=1)
    y += 0.3 * _filt(x, "bandpass", (f3 * 0.9, f3 * 1.1), order=1)
    return y


def _amp(x: Array, gain: float, tone: float) -> Array:
    """Guitar amp + cabinet: low cut, tanh clipping at ``gain``, speaker roll-off at ``tone`` Hz."""
    x = _filt(x, "highpass", 120.0)
    y = np.tanh(gain * x / (_rms(x) + 1e-9) * 0.3).astype(F32)
    return _filt(y, "lowpass", tone, order=4)


def _lead(c: _Clip, kind: str, notes: Sequence[Note]) -> Array:
    """A melody played by ``kind``, with the track processing that instrument needs."""
    rng = c.rng
    if kind == "voice":
        low = [(t, d, m - 12, v) for t, d, m, v in notes]
        return _formants(c.render(voice(rng, vib_depth=rng.uniform(0.005, 0.015)), low), rng)
    if kind == "guitar":  # overdriven solo guitar
        track = c.render(pluck(rng, bright=0.75, decay=0.7, twang=0.3), notes)
        return _amp(track, rng.uniform(4, 15), rng.uniform(3500, 5000))
    if kind == "twang":  # clean bridge-pickup guitar with bends
        return _filt(
            c.render(pluck(rng, bright=0.95, decay=0.35, twang=1.0), notes), "highpass", 400
        )
    if kind in ("sax", "trumpet", "harmonica"):
        odd, band = {"sax": (0.1, (300, 3500)), "trumpet": (-0.2, (500, 5000))}.get(
            kind, (0.2, (600, 4000))
        )
        track = c.render(
            breathy(rng, odd=odd, vib_depth=0.006 + 0.006 * (kind == "harmonica")), notes
        )
        return _filt(track, "bandpass", band)
    if kind in ("violin", "fiddle"):
        track = c.render(bowed(rng, attack=0.08 if kind == "violin" else 0.03, voices=1), notes)
        return _filt(track, "bandpass", (400, 6000))
    if kind == "flute":
        return c.render(breathy(rng, odd=0.6, vib_depth=0.004), notes)
    if kind == "steel":  # pedal steel: pure, gliding, wide vibrato
        return c.render(breathy(rng, odd=0.0, vib_depth=0.008), notes)
    if kind == "synth":
        return c.render(breathy(rng, odd=0.9, vib_depth=0.0), notes)
    raise ValueError(f"no lead instrument {kind!r}")


# --------------------------------------------------------------------------------------------
# Genres: each returns its tracks by role with a mix level (dB), and master settings
# --------------------------------------------------------------------------------------------

Track = tuple[Array, float]
Tracks = dict[str, Track]  # role (drums, bass, harmony, lead, ...) -> (audio, level dB)


@dataclass
class _Master:
    drive: float  # bus saturation (a compressor stand-in)
    reverb: float  # wet share
    room: float  # reverb decay, seconds
    tilt: float  # lowpass cutoff (Hz) of the final mix: dull or bright production


def _master(
    rng: np.random.Generator,
    drive: tuple[float, float],
    reverb: tuple[float, float],
    room: tuple[float, float],
    tilt: tuple[float, float],
) -> _Master:
    u = rng.uniform
    return _Master(u(*drive), u(*reverb), u(*room), u(*tilt))


def _blues(c: _Clip) -> tuple[Tracks, _Master]:
    rng = c.rng
    prog: list[Chord] = [(0, "7")] * 4 + [(5, "7")] * 2 + [(0, "7")] * 2
    prog += [(7, "7"), (5, "7"), (0, "7"), (7, "7")]
    if rng.random() < 0.5:
        prog[1] = (5, "7")  # the quick change to IV
    drums = c.kit(
        [
            (kick(rng, punch=0.3), ["X.....x.....", "X.....x..o.."], 1.0),
            (snare(rng, tail=0.12), ["...X.....X..", "...X..o..X.."], 0.8),
            (cymbal(rng, ride=True) if rng.random() < 0.35 else hat(rng), ["x.ox.ox.ox.o"], 0.5),
        ]
    )
    # The boogie shuffle: 1-3-5-6-b7-6-5-3 on the long and short notes of each triplet beat.
    walk = (0, 4, 7, 9, 10, 9, 7, 4)
    figure = [
        (i // 2 + (2 / 3 if i % 2 else 0.0), walk[i], 0.3 if i % 2 else 0.6, 0.6 if i % 2 else 0.9)
        for i in range(8)
    ]
    bass = c.render(pluck(rng, bright=0.2, decay=0.8), c.bass_line(prog, figure, 33))
    kind = _pick(rng, {"guitar": 0.5, "piano": 0.3, "organ": 0.2})
    ins = {"guitar": lambda: pluck(rng, bright=0.5, decay=0.5), "piano": lambda: piano(rng)}.get(
        kind, lambda: organ(rng)
    )()
    comp = c.render(
        ins, c.chord_hits(prog, [0, 1 + 2 / 3, 2, 3 + 2 / 3], 0.5, 52, strum=0.01, keep=0.8)
    )
    if kind == "guitar":
        comp = _amp(comp, rng.uniform(1, 4), 4000)
    rhythms: list[list[float]] = [
        [1, 2 / 3, 1 / 3, 1, 1],
        [2 / 3, 1 / 3, 2 / 3, 1 / 3, 2],
        [2, 1, 1],
        [1.5, 0.5, 2],
    ]
    mel = c.melody(SCALES["blues"], 57, 76, rhythms, rest=0.3, leap=0.3)
    lead = _lead(c, _one(rng, ["guitar", "harmonica", "voice"]), mel)
    tracks = {
        "drums": (drums, rng.uniform(-4, 0)),
        "bass": (bass, rng.uniform(-6, -2)),
        "harmony": (comp, rng.uniform(-8, -3)),
        "lead": (lead, rng.uniform(-6, -1)),
    }
    return tracks, _master(rng, (1.0, 2.0), (0.1, 0.25), (0.6, 1.2), (5000, 9000))


_CLASSICAL_PROGRESSIONS: dict[bool, list[list[Chord]]] = {
    False: [
        [(0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")],
        [(0, "maj"), (9, "min"), (2, "min"), (7, "7")],
        [
            (0, "maj"),
            (7, "maj"),
            (9, "min"),
            (4, "min"),
            (5, "maj"),
            (0, "maj"),
            (5, "maj"),
            (7, "7"),
        ],
    ],
    True: [
        [(0, "min"), (5, "min"), (7, "7"), (0, "min")],
        [(0, "min"), (8, "maj"), (3, "maj"), (7, "7")],
        [
            (0, "min"),
            (2, "dim"),
            (7, "7"),
            (0, "min"),
            (5, "min"),
            (10, "maj"),
            (3, "maj"),
            (7, "7"),
        ],
    ],
}


def _classical(c: _Clip) -> tuple[Tracks, _Master]:
    rng = c.rng
    minor = bool(rng.random() < 0.45)
    prog = _one(rng, _CLASSICAL_PROGRESSIONS[minor])
    scale = SCALES["harmonic" if minor else "major"]
    per_bar = int(rng.integers(1, 3))  # harmonic rhythm: one or two chords a bar
    span = c.bar / per_bar
    changes = [(b * span, prog[b % len(prog)]) for b in range(c.n_bars * per_bar)]
    texture = _pick(rng, {"piano": 0.35, "strings": 0.4, "chamber": 0.25})
    tracks: Tracks
    if texture == "piano":
        ins = piano(rng, bright=rng.uniform(0.3, 0.7))
        figure = _one(rng, ["alberti", "arpeggio", "block"])
        notes: list[Note] = []
        for t0, ch in changes:
            tones = c.chord_midi(ch, 55)
            notes.append((t0, span, c.root_midi(ch, 36), 0.7))
            if figure == "block":
                notes += [(t0 + span / 2, span / 2, m, 0.5) for m in tones]
            else:
                seq = [tones[0], tones[2], tones[1], tones[2]]
                if figure == "arpeggio":
                    seq = [*tones, tones[0] + 12]
                k = 8 // per_bar
                notes += [
                    (t0 + i * span / k, span / k * 1.5, seq[i % len(seq)], 0.45) for i in range(k)
                ]
        rhythms: list[list[float]] = [[1, 1, 2], [0.5, 0.5, 1, 2], [1.5, 0.5, 1, 1], [2, 2]]
        mel = c.render(ins, c.melody(scale, 67, 88, rhythms, rest=0.05, leap=0.15))
        tracks = {
            "harmony": (c.render(ins, notes), rng.uniform(-6, -3)),
            "lead": (mel, rng.uniform(-5, -1)),
        }
    else:
        ensemble = bowed(rng, attack=rng.uniform(0.1, 0.4), voices=3)
        notes = [(t0, span * 1.02, m, 0.5) for t0, ch in changes for m in c.chord_midi(ch, 55)]
        notes += [(t0, span * 1.02, c.root_midi(ch, 40), 0.7) for t0, ch in changes]
        harmony = _filt(c.render(ensemble, notes), "lowpass", rng.uniform(2500, 4500))
        legato: list[list[float]] = [[2, 2], [1, 1, 2], [3, 1], [1.5, 0.5, 2]]
        line = c.melody(scale, 69, 91, legato, rest=0.05, leap=0.1)
        lead = _lead(c, "flute" if texture == "chamber" else "violin", line)
        tracks = {"harmony": (harmony, rng.uniform(-5, -2)), "lead": (lead, rng.uniform(-6, -2))}
        if texture == "chamber":  # pizzicato cellos
            pizz = [(t0, span, c.root_midi(ch, 36), 0.7) for t0, ch in changes]
            tracks["bass"] = (c.render(pluck(rng, bright=0.3, decay=1.2), pizz), -9.0)
    # Dynamics: slow swells and fades over the clip (up to 18 dB), which pop never has.
    points = max(3, int(c.n / SR / 4))
    curve_db = np.cumsum(rng.normal(0, 4, points))
    curve = 10 ** (np.maximum(curve_db - curve_db.max(), -18) / 20)
    gain = np.interp(np.arange(c.n), np.linspace(0, c.n, points), curve).astype(F32)
    tracks = {role: (audio * gain, level) for role, (audio, level) in tracks.items()}
    return tracks, _master(rng, (0.1, 0.5), (0.3, 0.5), (1.5, 2.5), (6000, 10000))


def _country(c: _Clip) -> tuple[Tracks, _Master]:
    rng = c.rng
    prog = _one(
        rng,
        [
            [
                (0, "maj"),
                (0, "maj"),
                (5, "maj"),
                (5, "maj"),
                (7, "maj"),
                (7, "maj"),
                (0, "maj"),
                (0, "maj"),
            ],
            [(0, "maj"), (5, "maj"), (0, "maj"), (7, "7")],
            [(0, "maj"), (7, "maj"), (9, "min"), (5, "maj")],
        ],
    )
    beat = _pick(rng, {"train": 0.5, "boomchick": 0.35, "rock": 0.15})
    parts: list[tuple[Array, Sequence[str], float]] = [
        (kick(rng, punch=0.3), ["X.......X......."], 1.0)
    ]
    if beat == "train":  # brushed snare on every sixteenth, accents on 2 and 4
        parts.append((brush(rng), ["ogoXogoxogoXogox"], 0.8))
    else:
        parts.append(
            (snare(rng, tail=0.1 if beat == "boomchick" else 0.15), ["....X.......X..."], 0.8)
        )
        parts.append((hat(rng), ["x.x.x.x.x.x.x.x."], 0.4))
    drums = c.kit(parts)
    # Boom-chick bass: root on 1, fifth (below if it would climb too high) on 3.
    figure = [(0.0, 0, 0.9, 0.9), (2.0, 7 - 12 * (rng.random() < 0.5), 0.9, 0.8)]
    bass = c.render(pluck(rng, bright=0.25, decay=0.6), c.bass_line(prog, figure, 36))
    # Acoustic strum: down strokes on 2 and 4, some up strokes between.
    acoustic = pluck(rng, bright=rng.uniform(0.7, 0.95), decay=0.6)
    notes = c.chord_hits(prog, [1, 3], 0.8, 52, strum=0.008)
    notes += c.chord_hits(prog, [0, 2], 0.8, 59, 0.3, strum=0.008, keep=0.4)
    strum = c.render(acoustic, notes)
    rhythms: list[list[float]] = [[0.5, 0.5, 1, 1, 1], [1, 0.5, 0.5, 2], [0.5] * 8, [1, 1, 1, 1]]
    mel = c.melody(SCALES["penta_major"], 62, 81, rhythms, rest=0.15, leap=0.2)
    kind = _pick(rng, {"twang": 0.35, "fiddle": 0.25, "steel": 0.15, "voice": 0.25})
    tracks = {
        "drums": (drums, rng.uniform(-7, -3)),
        "bass": (bass, rng.uniform(-6, -3)),
        "harmony": (strum, rng.uniform(-5, -1)),
        "lead": (_lead(c, kind, mel), rng.uniform(-5, -1)),
    }
    return tracks, _master(rng, (1.0, 2.0), (0.05, 0.2), (0.5, 1.0), (7000, 10000))


def _disco(c: _Clip) -> tuple[Tracks, _Master]:
    rng = c.rng
    prog = _one(
        rng,
        [
            [(0, "min7"), (5, "min7")],
            [(2, "min7"), (7, "9")],
            [(0, "maj7"), (5, "maj7")],
            [(0, "min7"), (10, "maj"), (8, "maj7"), (7, "min7")],
        ],
    )
    drums = c.kit(
        [
            (kick(rng, punch=0.6), ["X...X...X...X..."], 1.0),  # four on the floor
            (clap(rng) if rng.random() < 0.5 else snare(rng), ["....X.......X..."], 0.8),
            (hat(rng, open_=True), ["..x...x...x...x."], 0.5),  # the off-beat open hat
            (hat(rng), ["x.x.x.x.x.x.x.x.", "xoxoxoxoxoxoxoxo"], 0.3),
        ]
    )
    octaves = [(i / 2, 12 * (i % 2), 0.4, 0.7 if i % 2 else 0.9) for i in range(8)]
    ins = synthbass(rng) if rng.random() < 0.5 else pluck(rng, bright=0.45, decay=0.4)
    bass = _filt(c.render(ins, c.bass_line(prog, octaves, 36)), "lowpass", rng.uniform(700, 1500))
    kind = _one(rng, ["strings", "epiano", "guitar"])
    if kind == "guitar":  # muted sixteenth "chicken scratch"
        scratch = c.chord_hits(prog, [i / 4 for i in range(16)], 0.1, 60, 0.5, keep=0.7)
        chords = _filt(c.render(pluck(rng, bright=0.9, decay=0.1), scratch), "highpass", 1000)
    elif kind == "epiano":
        chords = c.render(epiano(rng), c.chord_hits(prog, [1, 3], 0.4, 60))
    else:
        pads = c.chord_hits(prog, [0], 3.8, 60)
        chords = _filt(c.render(bowed(rng, attack=0.05, voices=3), pads), "lowpass", 5000)
    lead = c.zeros()
    if rng.random() < 0.6:
        rhythms: list[list[float]] = [[1, 1, 1, 1], [0.5, 0.5, 1, 2], [1.5, 0.5, 1, 1]]
        lead = _lead(c, "voice", c.melody(SCALES["dorian"], 72, 91, rhythms, rest=0.2))
    tracks = {
        "drums": (drums, rng.uniform(-3, 0)),
        "bass": (bass, rng.uniform(-4, -1)),
        "harmony": (chords, rng.uniform(-7, -3)),
        "lead": (lead, rng.uniform(-6, -2)),
    }
    return tracks, _master(rng, (1.5, 2.5), (0.1, 0.2), (0.8, 1.2), (8000, 10500))


def _hiphop(c: _Clip) -> tuple[Tracks, _Master]:
    rng = c.rng
    prog = _one(
        rng,
        [
            [(0, "min7")],
            [(0, "min7"), (8, "maj7")],
            [(0, "min9"), (5, "min7")],
            [(0, "min7"), (10, "7"), (8, "maj7"), (7, "min7")],
        ],
    )
    grooves = ["X.....X...X.....", "X..X....X.x.....", "X.....x.X..X....", "X.x.......X..x.."]
    kick_events = c.hits([_one(rng, grooves), _one(rng, grooves)])
    drums = c.zeros()
    c.drum(drums, kick(rng, punch=0.8, low=45), kick_events)
    backbeat = snare(rng, tail=0.1) if rng.random() < 0.5 else clap(rng)
    c.drum(drums, backbeat, c.hits(["....X.......X..."]), 0.9)
    hats = _one(rng, ["x.x.x.x.x.x.x.x.", "xoxoxoxoxoxoxoxo", "x.xxx.x.x.xxx.x."])
    c.drum(drums, hat(rng), c.hits([hats]), 0.35)
    sub = c.zeros()
    if rng.random() < 0.8:  # an 808 on the kick, tuned to the key
        c.drum(sub, sub808(rng, _hz(c.root_midi(prog[0], 28)), c.beat * 1.5), kick_events)
    # The sampled loop: a few chord stabs (or one long one), dulled like an old record.
    kind = _pick(rng, {"epiano": 0.4, "piano": 0.3, "strings": 0.15, "organ": 0.15})
    makers: dict[str, Callable[[], _Instr]] = {
        "epiano": lambda: epiano(rng),
        "piano": lambda: piano(rng, bright=0.3),
        "strings": lambda: bowed(rng, attack=0.2),
        "organ": lambda: organ(rng),
    }
    stabs = rng.random() < 0.5
    hits = c.chord_hits(prog, [0.0, 1.5, 2.5] if stabs else [0.0], 1.0 if stabs else 3.5, 58)
    loop = _filt(c.render(makers[kind](), hits), "lowpass", rng.uniform(1500, 4000))
    if rng.random() < 0.5:  # vinyl crackle
        crackle = (rng.random(c.n) < 0.0008) * rng.uniform(-1, 1, c.n)
        loop += _filt(crackle.astype(F32), "highpass", 2000.0) * F32(0.3)
    rap = c.zeros()
    if rng.random() < 0.75:  # rap: syllables on sixteenths around a speaking pitch
        base = int(rng.integers(45, 55))
        syllables: list[Note] = [
            (b * c.bar + i * c.beat / 4, c.beat / 5, base + rng.uniform(-2, 3), rng.uniform(0.6, 1))
            for b in range(c.n_bars)
            for i in range(16)
            if rng.random() < 0.6
        ]
        rap = _formants(c.render(voice(rng, vib_depth=0.0), syllables), rng)
    tracks = {
        "drums": (drums, rng.uniform(-3, 0)),
        "bass": (sub, rng.uniform(-4, 0)),
        "harmony": (loop, rng.uniform(-9, -4)),
        "lead": (rap, rng.uniform(-5, -1)),
    }
    return tracks, _master(rng, (1.5, 3.0), (0.03, 0.12), (0.4, 0.8), (6000, 9000))


def _jazz(c: _Clip) -> tuple[Tracks, _Master]:
    rng = c.rng
    prog = _one(
        rng,
        [
            [(2, "min7"), (7, "9"), (0, "maj7"), (0, "maj7")],
            [(0, "maj7"), (9, "7"), (2, "min7"), (7, "9")],
            [(2, "m7b5"), (7, "7"), (0, "min9"), (0, "min9")],
            [
                (0, "6"),
                (9, "min7"),
                (2, "min7"),
                (7, "7"),
                (4, "min7"),
                (9, "7"),
                (2, "min7"),
                (7, "9"),
            ],
        ],
    )
    # Ride "ding, ding-a-ding" on the triplet grid, hi-hat foot on 2 and 4.
    parts: list[tuple[Array, Sequence[str], float]] = [
        (cymbal(rng, ride=True), ["X..x.xX..x.x"], 0.6),
        (hat(rng), ["...x.....x.."], 0.3),
    ]
    if rng.random() < 0.3:
        parts.append((brush(rng), ["xoooxoooxooo"], 0.5))
    else:  # snare comping: a few ghost notes, feathered kick
        parts.append(
            (snare(rng, tail=0.08), ["".join(_one(rng, ".....g") for _ in range(12))], 0.4)
        )
        parts.append((kick(rng, punch=0.1), ["g.....g.....", "............"], 0.5))
    drums = c.kit(parts)
    # Walking bass: root, two chord tones, then a half-step approach to the next root.
    walk: list[Note] = []
    for b in range(c.n_bars):
        tones = c.chord_midi(c.chord_at(prog, b), 31)
        target = c.root_midi(c.chord_at(prog, b + 1), 31) + int(rng.choice([-1, 1]))
        line = [tones[0], _one(rng, tones[1:]), _one(rng, tones[1:]), target]
        walk += [(b * c.bar + i * c.beat, c.beat * 0.9, m, 0.8) for i, m in enumerate(line)]
    bass = c.render(pluck(rng, bright=0.15, decay=1.0), walk)
    kind = _pick(rng, {"piano": 0.55, "epiano": 0.25, "guitar": 0.2})
    ins = {"piano": lambda: piano(rng, bright=0.4), "epiano": lambda: epiano(rng)}.get(
        kind, lambda: pluck(rng, bright=0.3, decay=0.8)
    )()
    comping: list[Note] = []
    for b in range(c.n_bars):
        full = c.chord_midi(c.chord_at(prog, b), 53)
        tones = [*full[1:], full[0] + 14]  # rootless voicing with a ninth
        for slot in range(12):
            if slot % 3 != 1 and rng.random() < 0.18:
                comping += [(b * c.bar + slot * c.bar / 12, c.beat * 0.6, m, 0.45) for m in tones]
    comp = c.render(ins, comping)
    lead = c.zeros()
    solo = _pick(rng, {"sax": 0.35, "trumpet": 0.2, "piano": 0.25, "none": 0.2})
    if solo != "none":
        rhythms: list[list[float]] = [
            [2 / 3, 1 / 3] * 4,
            [1, 2 / 3, 1 / 3, 2],
            [2 / 3, 1 / 3, 2 / 3, 1 / 3, 1, 1],
        ]
        lo = 55 if solo == "sax" else 62
        mel = c.melody(SCALES["dorian"], lo, lo + 20, rhythms, rest=0.15, leap=0.35, vary=0.7)
        lead = c.render(ins, mel) if solo == "piano" else _lead(c, solo, mel)
    tracks = {
        "drums": (drums, rng.uniform(-8, -4)),
        "bass": (bass, rng.uniform(-4, -1)),
        "harmony": (comp, rng.uniform(-6, -2)),
        "lead": (lead, rng.uniform(-4, 0)),
    }
    return tracks, _master(rng, (0.3, 1.0), (0.15, 0.3), (0.8, 1.5), (5000, 8000))


def _metal(c: _Clip) -> tuple[Tracks, _Master]:
    rng = c.rng
    prog = _one(
        rng,
        [
            [(0, "5"), (8, "5"), (10, "5"), (0, "5")],
            [(0, "5"), (1, "5"), (0, "5"), (3, "5")],  # phrygian
            [(0, "5"), (0, "5"), (5, "5"), (6, "5")],  # tritone
        ],
    )
    c.key = _one(rng, [1, 2, 3, 4])  # low tunings: C#, D, Eb, E
    style = _pick(rng, {"double": 0.5, "blast": 0.25, "gallop": 0.25})
    kicks = {
        "double": "xxxxxxxxxxxxxxxx",
        "blast": "x.x.x.x.x.x.x.x.",
        "gallop": "x.xxx.xxx.xxx.xx",
    }
    drums = c.kit(
        [
            (kick(rng, punch=1.0, low=55), [kicks[style]], 0.8),
            (
                snare(rng, tone=0.7),
                ["..x...x...x...x." if style == "blast" else "....X.......X..."],
                1.0,
            ),
            (
                cymbal(rng, ride=False),
                ["X...............", "........", "x.......", "........"],
                0.6,
            ),
            (cymbal(rng, ride=True), ["x.x.x.x.x.x.x.x."], 0.35),
        ]
    )
    if rng.random() < 0.5:  # tom fill closing every fourth bar
        fill = [
            (b * c.bar + i * c.bar / 16, 0.9) for b in range(3, c.n_bars, 4) for i in range(8, 16)
        ]
        c.drum(drums, tom(rng, 140), fill[::2])
        c.drum(drums, tom(rng, 95), fill[1::2])
    # Palm-muted chugs with some accents let ring, through a saturated amp with scooped mids.
    riff = _one(rng, ["X.xxX.xxX.xxXxxx", "XxxxXxxxXxxxXxxx", "X..xX..xX.xxX..."])
    muted: list[Note] = []
    ringing: list[Note] = []
    for b in range(c.n_bars):
        root = c.root_midi(c.chord_at(prog, b), 38)
        for t, v in c.step_times(riff, b):
            accent = v == 1.0
            (ringing if accent and rng.random() < 0.3 else muted).append(
                (t, c.beat * (1.0 if accent else 0.225), root, v)
            )
    gtr = c.render(powerchord(rng, mute=0.95), muted) + c.render(powerchord(rng, mute=0.2), ringing)
    gtr = _amp(gtr, rng.uniform(15, 40), rng.uniform(3500, 5500))
    gtr -= 0.5 * _filt(gtr, "bandpass", (500, 900))
    low = [(t, d, m - 12, v) for t, d, m, v in muted + ringing]
    bass = _amp(c.render(synthbass(rng), low), rng.uniform(2, 6), 2500)
    lead = c.zeros()
    if rng.random() < 0.4:  # shred: fast harmonic-minor runs
        rhythms: list[list[float]] = [[0.25] * 16, [0.5] * 8, [1, 0.5, 0.5, 2]]
        mel = c.melody(SCALES["harmonic"], 62, 86, rhythms, rest=0.05, leap=0.3)
        lead = _amp(c.render(pluck(rng, bright=0.8, decay=0.6), mel), 20, 5000)
    elif rng.random() < 0.5:  # growled vocals
        growls: list[Note] = [
            (b * c.bar + i * c.beat, c.beat, int(rng.integers(45, 52)), 1.0)
            for b in range(c.n_bars)
            for i in range(4)
            if rng.random() < 0.6
        ]
        lead = _formants(_soft(c.render(voice(rng, vib_depth=0.0), growls), 6.0), rng)
    tracks = {
        "drums": (drums, rng.uniform(-4, -1)),
        "harmony": (gtr, rng.uniform(-2, 0)),
        "bass": (bass, rng.uniform(-7, -4)),
        "lead": (lead, rng.uniform(-6, -2)),
    }
    return tracks, _master(rng, (2.5, 4.0), (0.05, 0.15), (0.5, 1.0), (8000, 10500))


def _pop(c: _Clip) -> tuple[Tracks, _Master]:
    rng = c.rng
    prog = _one(
        rng,
        [
            [(0, "maj"), (7, "maj"), (9, "min"), (5, "maj")],
            [(9, "min"), (5, "maj"), (0, "maj"), (7, "maj")],
            [(0, "maj"), (9, "min"), (5, "maj"), (7, "maj")],
            [(5, "maj"), (7, "maj"), (4, "min"), (9, "min")],
        ],
    )
    drums = c.kit(
        [
            (
                kick(rng, punch=0.7),
                [_one(rng, ["X.......X.x.....", "X.....x.X.......", "X...X...X...X..."])],
                1.0,
            ),
            (clap(rng) if rng.random() < 0.6 else snare(rng), ["....X.......X..."], 1.0),
            (hat(rng), [_one(rng, ["x.x.x.x.x.x.x.x.", "xxxxxxxxxxxxxxxx"])], 0.35),
        ]
    )
    eighths = [(i / 2, 0, 0.45, 0.8) for i in range(8)]
    ins = synthbass(rng) if rng.random() < 0.6 else pluck(rng, bright=0.3, decay=0.5)
    bass = _filt(c.render(ins, c.bass_line(prog, eighths, 33)), "lowpass", rng.uniform(600, 1500))
    kind = _pick(rng, {"pad": 0.45, "piano": 0.35, "guitar": 0.2})
    if kind == "pad":
        pad = c.render(bowed(rng, attack=0.3, voices=3), c.chord_hits(prog, [0], 4, 60))
        keys = _filt(pad, "lowpass", rng.uniform(2000, 5000))
    else:
        ins = piano(rng, bright=0.7) if kind == "piano" else pluck(rng, bright=0.7, decay=0.5)
        keys = c.render(ins, c.chord_hits(prog, [0, 1, 2, 3], 0.9, 60))
    if rng.random() < 0.2:  # pop-rock: a crunchy guitar under the keys
        crunch = c.render(powerchord(rng, mute=0.6), c.bass_line(prog, eighths[::2], 40))
        keys += 0.5 * _amp(crunch, rng.uniform(3, 8), 4000)
    rhythms: list[list[float]] = [[1, 1, 1, 1], [0.5, 0.5, 1, 2], [1.5, 0.5, 1, 1], [0.5] * 4 + [2]]
    mel = c.melody(SCALES["major"], 72, 89, rhythms, rest=0.12, leap=0.15, vary=0.15)
    vocal = _lead(c, "voice", mel)
    if rng.random() < 0.4:  # a synth doubling the hook
        vocal += 0.3 * _lead(c, "synth", mel[::2])
    tracks = {
        "drums": (drums, rng.uniform(-3, 0)),
        "bass": (bass, rng.uniform(-5, -2)),
        "harmony": (keys, rng.uniform(-7, -3)),
        "lead": (vocal, rng.uniform(-3, 0)),
    }
    return tracks, _master(rng, (2.0, 3.0), (0.1, 0.2), (0.8, 1.3), (8500, 10500))


def _reggae(c: _Clip) -> tuple[Tracks, _Master]:
    rng = c.rng
    prog = _one(
        rng,
        [
            [(0, "min"), (5, "min")],
            [(0, "maj"), (5, "maj")],
            [(0, "maj"), (7, "maj"), (9, "min"), (5, "maj")],
            [(0, "min"), (10, "maj")],
        ],
    )
    style = _pick(rng, {"onedrop": 0.6, "rockers": 0.25, "steppers": 0.15})
    kicks = {
        "onedrop": "........X.......",
        "rockers": "X.......X.......",
        "steppers": "X...X...X...X...",
    }
    drums = c.kit(
        [
            (kick(rng, punch=0.4), [kicks[style]], 1.0),
            (rim(rng) if rng.random() < 0.6 else snare(rng, tail=0.08), ["........X......."], 0.8),
            (hat(rng), ["x.x.x.x.x.x.x.x.", "x.xxx.x.x.xxx.x."], 0.35),
        ]
    )
    # Deep, round bass with space in it: root, fifth, octave, seventh, fifth.
    shape = [
        (0.0, 0, 0.45, 0.9),
        (1.5, 7, 0.45, 0.9),
        (2.0, 0, 0.45, 0.9),
        (2.5, -2, 0.45, 0.9),
        (3.0, 7, 0.45, 0.9),
    ]
    line = [note for note in c.bass_line(prog, shape, 33) if rng.random() < 0.85]
    bass = _filt(
        c.render(pluck(rng, bright=0.05, decay=0.6), line), "lowpass", rng.uniform(300, 600)
    )
    # The skank: short, bright chord chops on the off-beats.
    chops = c.chord_hits(prog, [1, 3], 0.12, 62, 0.7) + c.chord_hits(
        prog, [1.5, 3.5], 0.12, 62, 0.5, keep=0.3
    )
    skank = _filt(
        c.render(pluck(rng, bright=0.9, decay=0.15), chops), "highpass", rng.uniform(600, 1200)
    )
    bubble = c.zeros()
    if rng.random() < 0.6:  # organ bubble on the "e" and "a" of each beat
        bubble = c.render(
            organ(rng), c.chord_hits(prog, [i + f for i in range(4) for f in (0.25, 0.75)], 0.2, 55)
        )
    vocal = c.zeros()
    if rng.random() < 0.7:
        scale = SCALES["penta_minor" if prog[0][1] == "min" else "penta_major"]
        mel = c.melody(scale, 69, 86, [[1, 1, 2], [0.5, 0.5, 1, 1, 1], [2, 2]], rest=0.25)
        vocal = _lead(c, "voice", mel)
    tracks = {
        "drums": (drums, rng.uniform(-6, -2)),
        "bass": (bass, rng.uniform(-2, 0)),
        "harmony": (skank, rng.uniform(-8, -4)),
        "harmony2": (bubble, rng.uniform(-12, -7)),
        "lead": (vocal, rng.uniform(-5, -1)),
    }
    return tracks, _master(rng, (1.0, 2.0), (0.15, 0.3), (0.8, 1.6), (5000, 8000))


def _rock(c: _Clip) -> tuple[Tracks, _Master]:
    rng = c.rng
    prog = _one(
        rng,
        [
            [(0, "5"), (10, "5"), (5, "5"), (0, "5")],
            [(0, "5"), (5, "5"), (7, "5"), (5, "5")],
            [(0, "5"), (7, "5"), (9, "5"), (5, "5")],
            [(9, "5"), (7, "5"), (5, "5"), (7, "5")],
        ],
    )
    drums = c.kit(
        [
            (kick(rng, punch=0.7), ["X.......X.x.....", "X.......X......."], 1.0),
            (snare(rng, tone=0.6), ["....X.......X..."], 1.0),
            (cymbal(rng, ride=True) if rng.random() < 0.3 else hat(rng), ["x.x.x.x.x.x.x.x."], 0.4),
            (
                cymbal(rng, ride=False),
                ["X...............", "........", "........", "........"],
                0.5,
            ),
        ]
    )
    eighths = [(i / 2, 0, 0.45, 0.8) for i in range(8)]
    if rng.random() < 0.3:  # open major chords strummed in eighths
        majors = [(root, "maj") for root, _ in prog]
        strums = c.chord_hits(
            majors, [i / 2 for i in range(8)], 0.5, 52, 0.6, strum=0.006, keep=0.75
        )
        gtr = c.render(pluck(rng, bright=0.7, decay=0.6), strums)
    else:  # power chords in eighths
        gtr = c.render(powerchord(rng, mute=rng.uniform(0.3, 0.8)), c.bass_line(prog, eighths, 40))
    gtr = _amp(gtr, rng.uniform(4, 15), rng.uniform(3500, 5500))
    bass = c.render(pluck(rng, bright=0.35, decay=0.5), c.bass_line(prog, eighths, 28))
    rhythms: list[list[float]] = [[1, 1, 1, 1], [0.5, 0.5, 1, 2], [1.5, 0.5, 2]]
    mel = c.melody(SCALES["penta_minor"], 69, 88, rhythms, rest=0.15, leap=0.2)
    lead = _lead(c, _pick(rng, {"voice": 0.7, "guitar": 0.3}), mel)
    tracks = {
        "drums": (drums, rng.uniform(-3, 0)),
        "harmony": (gtr, rng.uniform(-3, 0)),
        "bass": (bass, rng.uniform(-7, -3)),
        "lead": (lead, rng.uniform(-4, 0)),
    }
    return tracks, _master(rng, (1.8, 3.0), (0.08, 0.2), (0.6, 1.2), (7000, 10000))


# Tempo range (BPM) and swing (share of a step the off-beats are late) per genre.
_TEMPO: dict[str, tuple[float, float, float]] = {
    "blues": (60, 100, 0.0),
    "classical": (60, 120, 0.0),
    "country": (90, 140, 0.0),
    "disco": (110, 130, 0.0),
    "hiphop": (78, 100, 0.25),
    "jazz": (100, 220, 0.0),
    "metal": (140, 200, 0.0),
    "pop": (95, 128, 0.0),
    "reggae": (65, 90, 0.15),
    "rock": (100, 150, 0.0),
}

# Who borrows from whom (roughly the confusions people make on real GTZAN).
_NEIGHBOURS: dict[str, tuple[str, ...]] = {
    "blues": ("jazz", "rock", "country"),
    "classical": ("jazz", "pop"),
    "country": ("rock", "blues", "pop"),
    "disco": ("pop", "hiphop", "reggae"),
    "hiphop": ("reggae", "pop", "disco"),
    "jazz": ("blues", "classical"),
    "metal": ("rock",),
    "pop": ("disco", "rock", "country", "hiphop"),
    "reggae": ("hiphop", "pop"),
    "rock": ("metal", "pop", "blues", "country"),
}
# Share of clips with one part (drums, bass, harmony or lead) taken from a neighbouring genre.
BORROW_PROBABILITY = 0.4

_STYLES: dict[str, Callable[[_Clip], tuple[Tracks, _Master]]] = {
    "blues": _blues,
    "classical": _classical,
    "country": _country,
    "disco": _disco,
    "hiphop": _hiphop,
    "jazz": _jazz,
    "metal": _metal,
    "pop": _pop,
    "reggae": _reggae,
    "rock": _rock,
}


# --------------------------------------------------------------------------------------------
# Mixing, mastering, recording conditions
# --------------------------------------------------------------------------------------------


def _comb_reverb(x: Array, rng: np.random.Generator, seconds: float) -> Array:
    """A small Schroeder reverb: parallel feedback combs, computed a delay-long block at a time.

    The tail is dull anyway, so it runs at half the sample rate (half the work).
    """
    half = x[::2].copy()
    out = np.zeros_like(half)
    n = len(half)
    for delay_ms in rng.uniform(25, 45, 3):
        d = int(delay_ms / 1000 * SR / 2)
        g = 10 ** (-3 * (d * 2 / SR) / seconds)  # -60 dB after `seconds`
        y = half.copy()
        for start in range(d, n, d):
            end = min(start + d, n)
            y[start:end] += g * y[start - d : end - d]
        out += y
    wet = np.repeat(out / 3, 2)[: len(x)]
    return _filt(wet, "lowpass", 5000.0)


def _mix(tracks: Tracks, master: _Master, rng: np.random.Generator, n: int) -> Array:
    mix = np.zeros(n, dtype=F32)
    for track, level in tracks.values():
        r = _rms(track)
        if r > 1e-6:
            mix += track * F32(_db(level) / r)
    if master.reverb > 0:
        wet = _comb_reverb(mix, rng, master.room)
        mix += wet * F32(master.reverb * _rms(mix) / (_rms(wet) + 1e-9))
    mix = _filt(mix, "lowpass", master.tilt, order=1)
    mix = _filt(mix, "highpass", 30.0)
    peak = float(np.max(np.abs(mix))) + 1e-9
    return _soft(mix / F32(peak), master.drive)


def _record_badly(x: Array, rng: np.random.Generator) -> Array:
    """Drift: the same performance played back slightly slow and re-recorded in a noisy room.

    Each step alone moves only some features; together a two-sample test flags most features
    and a classifier trained on clean clips loses about half its accuracy, while the music
    stays recognisable: duller (cheap microphone), noisier and flatter (room noise,
    hum), more diffuse (reverb), a little lower and slower (clock drift), quieter (gain).
    """
    n = len(x)
    # Slightly slow playback (clock drift): lower pitch, slower tempo; same length.
    rate = rng.uniform(0.97, 0.99)
    x = np.interp(np.arange(n) * rate, np.arange(n), x).astype(F32)
    wet = _comb_reverb(x, rng, rng.uniform(0.6, 1.2))
    x = x + wet * F32(rng.uniform(0.15, 0.3) * _rms(x) / (_rms(wet) + 1e-9))
    # Room noise (pinkish) reaches the microphone with the music, so it is band-limited too.
    noise = _filt(rng.standard_normal(n).astype(F32), "lowpass", rng.uniform(1000, 4000), order=1)
    x = x + noise * F32(_rms(x) / (_rms(noise) + 1e-9) * _db(-rng.uniform(16, 24)))
    # A small, cheap microphone: a dull top end.
    x = _filt(x, "lowpass", rng.uniform(4000, 6000), order=1)
    # Mains hum from the recording chain.
    t = np.arange(n, dtype=F32) / F32(SR)
    mains = float(rng.choice([50.0, 60.0]))
    hum = sum(np.sin(F32(2 * np.pi * mains * k) * t) / k for k in (1, 2, 3))
    x = x + F32(_rms(x) * _db(-rng.uniform(30, 40))) * np.asarray(hum, dtype=F32)
    peak = float(np.max(np.abs(x))) + 1e-9
    return (x / F32(peak) * F32(_db(-rng.uniform(4, 12)))).astype(F32)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


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
