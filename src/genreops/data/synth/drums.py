"""Drum one-shots, rendered once per clip with that clip's own tuning."""

from __future__ import annotations

import numpy as np

from genreops.data.synth.dsp import F32, SR, Array, _filt, _soft

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
