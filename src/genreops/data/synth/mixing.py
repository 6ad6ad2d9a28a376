"""The mix bus and master settings, and the recording conditions of the drift variant."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genreops.data.synth.dsp import F32, SR, Array, _db, _filt, _rms, _soft

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
