"""Genres: each returns its tracks by role with a mix level (dB), and master settings.

Tempo, swing and which genres borrow from which are tables here; the arrangements live in
``band`` (blues, country, metal, rock), ``acoustic`` (classical, jazz) and ``groove`` (disco,
hip-hop, pop, reggae).
"""

from __future__ import annotations

from collections.abc import Callable

from genreops.data.synth.arrangement import _Clip
from genreops.data.synth.mixing import Tracks, _Master
from genreops.data.synth.styles.acoustic import _classical, _jazz
from genreops.data.synth.styles.band import _blues, _country, _metal, _rock
from genreops.data.synth.styles.groove import _disco, _hiphop, _pop, _reggae

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
