"""Sample-level building blocks: the rate, filters, gain, saturation, oscillators, envelopes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy import signal

from genreops.data.audio import SAMPLE_RATE

SR = SAMPLE_RATE
NYQ = SR / 2
F32 = np.float32
Array = np.ndarray


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
