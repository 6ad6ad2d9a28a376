"""Harmony tables and one clip's arrangement context: tempo grid, key, patterns, melodies, leads."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TypeVar

import numpy as np

from genreops.data.synth.dsp import F32, SR, Array, _filt, _rms
from genreops.data.synth.instruments import _Instr, bowed, breathy, pluck, voice

# Velocity letters in drum/rhythm patterns; '.' is a rest.
_VEL = {"X": 1.0, "x": 0.75, "o": 0.45, "g": 0.25}


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
