"""Acoustic ensembles: classical and jazz."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genreops.data.synth.arrangement import SCALES, Chord, Note, _Clip, _lead, _one, _pick
from genreops.data.synth.drums import brush, cymbal, hat, kick, snare
from genreops.data.synth.dsp import F32, SR, Array, _filt
from genreops.data.synth.instruments import bowed, epiano, piano, pluck
from genreops.data.synth.mixing import Tracks, _Master, _master

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
