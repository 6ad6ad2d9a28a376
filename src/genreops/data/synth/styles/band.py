"""Guitar-band genres: blues, country, metal, rock."""

from __future__ import annotations

from collections.abc import Sequence

from genreops.data.synth.arrangement import (
    SCALES,
    Chord,
    Note,
    _amp,
    _Clip,
    _formants,
    _lead,
    _one,
    _pick,
)
from genreops.data.synth.drums import brush, cymbal, hat, kick, snare, tom
from genreops.data.synth.dsp import Array, _filt, _soft
from genreops.data.synth.instruments import organ, piano, pluck, powerchord, synthbass, voice
from genreops.data.synth.mixing import Tracks, _Master, _master


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
