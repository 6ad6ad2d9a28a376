"""Groove and studio genres: disco, hip-hop, pop, reggae."""

from __future__ import annotations

from collections.abc import Callable

from genreops.data.synth.arrangement import SCALES, Note, _amp, _Clip, _formants, _lead, _one, _pick
from genreops.data.synth.drums import clap, hat, kick, rim, snare, sub808
from genreops.data.synth.dsp import F32, _filt, _hz
from genreops.data.synth.instruments import (
    _Instr,
    bowed,
    epiano,
    organ,
    piano,
    pluck,
    powerchord,
    synthbass,
    voice,
)
from genreops.data.synth.mixing import Tracks, _Master, _master


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
