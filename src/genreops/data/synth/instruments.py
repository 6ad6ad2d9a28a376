"""Pitched instruments: each returns a note synth with a per-clip cache of rendered notes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from genreops.data.synth.dsp import F32, NYQ, SR, Array, _additive, _ar, _hz, _n_harm, _phase, _saw

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
