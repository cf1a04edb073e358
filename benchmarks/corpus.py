"""Reproducible synthetic test audio for the kws-stream accuracy harness.

Builds, into a cache directory, with fixed seeds:

1. ``keywords/<keyword>/<voice>_<speed>_<n>.wav``: each of the ten keywords spoken by
   espeak-ng and flite voices at three speeds, trimmed by energy, peak-normalised to
   -20..-6 dBFS and placed at a random offset in 1.5 s of low white or pink noise
   (-60..-50 dBFS RMS); listed in ``keywords.csv``.
2. ``prose/prose_<nn>.wav``: about five minutes each of keyword-free read prose from
   varied voices and speeds, sentences joined by 0.1-0.6 s pauses over a low noise
   floor; the text and timings are in ``prose.txt``.

All audio is 16 kHz mono int16. ``manifest.json`` stores a hash of every parameter that
shapes an output (seed, voice lists, text data, tool versions, format version); outputs
whose file exists and whose hash matches are not rebuilt.

No-keyword rule for the prose (see :func:`contains_keyword`): the text is lower-cased
and split into runs of letters ``[a-z]+`` (so hyphens and apostrophes split words:
"take-off" gives "take", "off"). A sentence is rejected if any run is

* a keyword: down go left no off on right stop up yes;
* a keyword plus s, es, ed, ing, er or ers, or with its final consonant doubled
  before ed, ing, er, ers (downs, yeses, ons, stopped, stopping, upper, ...);
* goes, going, gone, rightly;
* a compound that starts with a keyword spoken as such: upon, onto, upward(s),
  upstairs, uphill, upright, upset, uptown, downstairs, downhill, downtown, downward(s),
  download, offset, offside, offshore, nobody, noone.

Usage: ``python -m benchmarks.corpus OUTDIR [--minutes 30] [--seed 0] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import scipy.signal
import soxr

import testsupport.audio
from kws_stream.features import MICRONET

SAMPLE_RATE = MICRONET.sample_rate
FORMAT_VERSION = 3
KEYWORDS: tuple[str, ...] = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")

# Keyword set
CLIP_SECONDS = 1.5
KEYWORD_LEVEL_DBFS = (-20.0, -6.0)
KEYWORD_NOISE_DBFS = (-60.0, -50.0)
KEYWORD_ESPEAK_VOICES = ("en-us", "en-us+f2", "en-gb+m3", "en-gb-x-rp+f4", "en-gb-scotland", "en-029+f3")
KEYWORD_ESPEAK_WPM = (130.0, 160.0, 190.0)
FLITE_VOICES = ("kal16", "slt", "rms", "awb")
KEYWORD_FLITE_STRETCH = (1.2, 1.0, 0.85)
# Held-out voices (--held-out): a validation corpus nothing is tuned on. The espeak voices
# share no voice+variant with the tuning set; flite has only four voices, so they differ
# in speed only.
HELD_OUT_KEYWORD_ESPEAK_VOICES = ("en-us+m1", "en-gb-x-gbclan+f1", "en-us-nyc+m7", "en-gb-x-gbcwmd+f5",
                                  "en-029+m2", "en-gb-scotland+f3")
HELD_OUT_KEYWORD_ESPEAK_WPM = (120.0, 150.0, 180.0)
HELD_OUT_KEYWORD_FLITE_STRETCH = (1.1, 0.92, 0.78)

# Prose stream
PROSE_FILE_MINUTES = 5.0
PROSE_ESPEAK_BASES = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
    "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)
PROSE_ESPEAK_VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m7", "+f1", "+f2", "+f3", "+f4", "+f5")
HELD_OUT_PROSE_ESPEAK_VARIANTS = ("+m5", "+m6", "+Andy", "+Annie", "+david", "+robert", "+steph", "+linda",
                                  "+klatt", "+grandpa")
PROSE_ESPEAK_WPM = (130.0, 200.0)
PROSE_FLITE_STRETCH = (0.85, 1.25)
PROSE_FLITE_SHARE = 0.3
PROSE_LEVEL_DBFS = (-20.0, -6.0)
PROSE_NOISE_DBFS = (-65.0, -55.0)
PAUSE_SECONDS = (0.1, 0.6)
PARAGRAPH_SENTENCES = (3, 7)
HANDWRITTEN_SHARE = 0.35
HANDWRITTEN_PER_FILE = 25  # each prose file starts this far along the shared shuffled deck
SECONDS_PER_WORD = 0.32  # rough planning estimate at 160 wpm / stretch 1.0

# Energy trimming
TRIM_FRAME = 80  # 5 ms
TRIM_REL_DB = -40.0
TRIM_FLOOR_DBFS = -70.0
TRIM_MARGIN_S = 0.02
FADE_S = 0.005

# Pink noise filter (J. O. Smith, "Spectral Audio Signal Processing"), with warm-up samples
PINK_B = (0.049922035, -0.095993537, 0.050612699, -0.004408786)
PINK_A = (1.0, -2.494956002, 2.017265875, -0.522189400)
PINK_WARMUP = 4000


class CorpusError(RuntimeError):
    """A synthesiser is missing or failed."""


# --------------------------------------------------------------------------- text


def _forbidden_words() -> frozenset[str]:
    """Every token the no-keyword rule rejects (see the module docstring)."""
    words: set[str] = set()
    for k in KEYWORDS:
        words.add(k)
        words.update(k + s for s in ("s", "es", "ed", "ing", "er", "ers"))
        if k[-1] not in "aeiouy":
            words.update(k + k[-1] + s for s in ("ed", "ing", "er", "ers"))
    words.update(("goes", "going", "gone", "rightly"))
    words.update((
        "upon", "onto", "upward", "upwards", "upstairs", "uphill", "upright", "upset",
        "uptown", "downstairs", "downhill", "downtown", "downward", "downwards",
        "download", "offset", "offside", "offshore", "nobody", "noone",
    ))
    return frozenset(words)


FORBIDDEN_WORDS = _forbidden_words()


def contains_keyword(text: str) -> bool:
    """True if ``text`` breaks the no-keyword rule (whole words, inflections, compounds)."""
    return any(tok in FORBIDDEN_WORDS for tok in re.findall(r"[a-z]+", text.lower()))


HANDWRITTEN: tuple[str, ...] = (
    "The morning train was late again, and the platform slowly filled with people holding paper cups of coffee.",
    "A light rain had fallen during the night, so the streets were still shining when the shops opened.",
    "My grandmother kept her recipes in a tin box that smelled of cinnamon and old paper.",
    "She never measured anything, yet every cake she baked tasted exactly the same.",
    "The museum will open its new gallery of ancient maps at the end of the month.",
    "Visitors can see how sailors once imagined the shape of the world before satellites existed.",
    "In the hills above the village, the shepherds still use whistles to call their dogs.",
    "The sound carries across the valley, clear and sharp, even when the wind is strong.",
    "Scientists have found that some birds can remember hundreds of places where they hid their food.",
    "During the winter, a single jay may recover thousands of acorns buried months before.",
    "The library is quiet in the afternoons, except for the soft ticking of the clock above the fireplace.",
    "Students sit at the long wooden tables, reading, writing, and sometimes falling asleep.",
    "Tonight will be mild, with patches of fog forming in low valleys after midnight.",
    "Tomorrow should be brighter, although a few showers may reach western coasts by the evening.",
    "The bakery at the corner sells bread that is still warm at seven in the morning.",
    "People wait in a quiet line, and the smell of fresh loaves drifts along the street.",
    "He repaired old clocks for a living, and his workshop was full of tiny brass wheels.",
    "Each clock had a story, and he liked to tell it while he worked.",
    "The river rises every spring when the snow melts in the mountains far to the north.",
    "Farmers along its banks have learned to plant their fields a little later than their neighbours.",
    "A good cup of tea needs fresh water, a warm pot, and a few minutes of patience.",
    "Some people add milk first, while others insist that this ruins the flavour completely.",
    "The orchestra rehearsed for three weeks before the first concert of the season.",
    "When the conductor raised his hands, the whole hall fell silent.",
    "Lighthouses were once kept by families who lived beside the lamp all year round.",
    "They cleaned the glass every day and wrote the weather in a thick leather book.",
    "The children built a small raft from branches and string and floated it across the pond.",
    "It sank halfway, but they laughed so hard that getting wet did not matter at all.",
    "The market square fills with stalls every Saturday, selling cheese, honey, flowers and handmade soap.",
    "An old man plays the accordion beside the fountain, and a few coins sparkle in his hat.",
    "Bees share the direction of flowers by dancing in the dark of the hive.",
    "The angle of the dance tells the other bees where to fly in relation to the sun.",
    "Her first novel was written in a small kitchen, late at night, while the baby slept.",
    "It was rejected eleven times before a small publisher finally accepted it.",
    "The bridge was built from local stone more than four hundred years ago.",
    "Carts, horses, cars and buses have crossed it, and it has never needed serious repair.",
    "To make a simple soup, soften an onion in butter, add chopped vegetables, and cover them with stock.",
    "Let it simmer gently until everything is tender, then season it with salt and pepper.",
    "The path through the forest is easy to follow, marked with small yellow signs painted by volunteers.",
    "After an hour of walking, you reach a clearing where deer often graze at dusk.",
    "The city council has agreed to plant a thousand new trees along the main avenues.",
    "The work will begin in autumn and should be finished before the summer.",
    "Cats sleep for much of the day, saving their energy for short bursts of hunting.",
    "Even a well fed house cat will watch a bird at the window for a very long time.",
    "The painter mixed his colours carefully, adding a little white to soften the blue of the sky.",
    "He worked quickly while the light lasted, because evening shadows change everything.",
    "Most of the water in the world is salty, and only a small share is fresh enough to drink.",
    "Much of that fresh water is frozen in glaciers and polar ice.",
    "The postman knew every family in the village and the names of all their dogs.",
    "When he retired, the whole street gathered to thank him with a cake shaped like a letter.",
    "Autumn is the season for apples, pears, chestnuts and long walks through crunchy leaves.",
    "The evenings grow shorter, and the first frost arrives without warning.",
    "The ship sailed at dawn, carrying timber, wool and a dozen nervous passengers.",
    "By the third day, the sea was calm and the sailors were singing as they worked.",
    "Learning a musical instrument trains the memory, the ears and the patience of the player.",
    "Practising a little every day is better than practising for hours once a week.",
    "The hotel stood at the edge of the lake, its windows reflecting the mountains.",
    "Guests ate breakfast in the garden and watched small boats drifting across the water.",
    "Ancient Egyptians used a kind of paper made from reeds that grew along the Nile.",
    "Many of their documents have survived for thousands of years in the dry desert air.",
    "The kettle whistled, the toast was ready, and the radio played a cheerful tune.",
    "It seemed like the beginning of an ordinary day, but the letter in the hall would change that.",
    "A hedgehog can eat a surprising number of beetles and slugs in a single night.",
    "Gardeners often welcome them, because they protect the vegetables without any chemicals.",
    "The first public libraries allowed anyone to borrow books for free.",
    "For many working families, this was the first chance to read regularly.",
    "The storm passed quickly, leaving broken branches and a sky washed clean.",
    "By the afternoon, children were splashing in puddles while their parents swept the paths.",
    "Our new neighbours moved in last week, with a piano, three bicycles and a very large parrot.",
    "The parrot greets everyone who walks past with a loud and cheerful hello.",
    "Tomatoes grow best in warm, sunny places with plenty of water and a little support.",
    "Pick them when they are red and slightly soft, and they will taste of summer.",
    "The professor explained that the stars we see tonight may have changed long ago.",
    "Their light has been travelling for so long that we are really looking at the past.",
    "In the small harbour, fishermen mend their nets while gulls circle overhead.",
    "The boats return in the late afternoon, and the catch is sold at the quay.",
    "A well written letter can be kept for a lifetime and read again and again.",
    "Emails are convenient, but few people print them and store them in a drawer.",
    "The festival began with a parade of drums, dancers and giant painted puppets.",
    "By midnight, the whole town was singing in the square.",
    "Mountain roads are narrow and winding, so drivers must be careful in bad weather.",
    "In winter, some passes are closed for months because of heavy snow.",
    "The chef tasted the sauce, added a pinch of salt, and nodded with satisfaction.",
    "Every plate that leaves the kitchen must look as good as it tastes.",
    "Owls hunt mostly at night, using their sharp hearing to find mice in the grass.",
    "Their feathers are so soft that they fly almost silently.",
    "The children were asked to write a short poem about the sea.",
    "One girl wrote about a whale who wanted to visit the moon.",
    "The old cinema has been restored, with velvet seats and a painted ceiling.",
    "Its first film will be a silent comedy, with live piano music.",
    "Rainforests cover a small part of the earth, yet they are home to more than half of its species.",
    "Many plants that grow there have never been studied by scientists.",
    "A long walk after dinner helps many people sleep better at night.",
    "It is also a good time to talk, away from screens and telephones.",
    "The town clock has struck every hour for two centuries, even during the war.",
    "Only once, in a great storm, was it silent for a whole day.",
    "Please remember to bring a warm coat, sturdy boots and something to eat.",
    "The tour will last about three hours, including a short rest at the cafe.",
    "Thank you for listening, and we hope you enjoy the rest of the evening.",
    "The next programme will begin in a few moments, after a short message from our sponsors.",
)

TEMPLATES: tuple[str, ...] = (
    "{time}, {person} {action} {place}.",
    "{person} {said} that {clause}.",
    "{person} {said} that the {thing} was {quality}.",
    "{time}, the {thing} was {quality}, and {person} {action} {place}.",
    "{forecast_day} will be {weather} in the {region}, with {weather_detail}.",
    "If you {plan}, remember to {advice}.",
    "{org} announced {news} {news_time}.",
    "Did you know that {fact}?",
    "{step} the {ingredient} and {cook} for {duration}.",
    "{place_cap}, {person} {action} while {person} {action}.",
)

SLOTS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "time": (
        "Early in the morning", "Last Tuesday", "Before breakfast", "Late that evening",
        "During the summer holidays", "After the storm", "Every Sunday", "Yesterday afternoon",
        "Some years ago", "At dawn", "In the middle of winter", "Just before midnight",
        "Once a month", "At the end of the day", "Later that week", "In the spring",
    ),
    "person": (
        "the old fisherman", "my neighbour", "a young teacher", "the museum guide", "her brother",
        "the baker across the street", "a tired traveller", "the captain", "our new doctor",
        "the librarian", "a quiet student", "the farmer's daughter", "the mayor",
        "an elderly painter", "the night watchman", "my grandmother", "a famous chef",
        "the postman", "two small children", "the weather forecaster", "my cousin from the coast",
        "the gardener", "a retired engineer", "the school choir",
    ),
    "action": (
        "carried a basket of apples", "painted a small blue boat", "wrote a long letter",
        "found an old map", "baked fresh bread", "repaired the garden fence", "counted the sheep",
        "read the morning paper", "planted tomatoes", "washed the windows", "fed the ducks",
        "tuned the piano", "sold three paintings", "mended a torn sail", "built a wooden bench",
        "collected shells", "sketched the cathedral", "watered the roses", "cleaned the chimney",
        "polished the silver spoons", "practised the violin", "swept the courtyard",
        "cooked a pot of soup", "photographed the birds",
    ),
    "place": (
        "in the village square", "beside the river", "at the edge of the forest",
        "behind the old mill", "near the harbour", "in the quiet library", "at the market",
        "by the railway station", "inside the greenhouse", "across the valley",
        "under the apple tree", "in the kitchen", "along the coast", "outside the bakery",
        "in the church hall", "near the lighthouse",
    ),
    "place_cap": (
        "In the village square", "Beside the river", "At the edge of the forest", "Near the harbour",
        "Inside the greenhouse", "Under the apple tree", "In the kitchen", "Along the coast",
    ),
    "said": ("said", "explained", "mentioned", "believed", "insisted", "whispered", "remembered", "wrote"),
    "clause": (
        "the train would be late", "the museum closes at five", "the soup needed more salt",
        "the bridge was built by hand", "the river floods every spring",
        "winter would be long this year", "the cat had eaten the fish",
        "the concert was sold out", "the old house was haunted", "the roses bloomed early",
        "the library was moving to a bigger building", "the harvest had been excellent",
        "the ferry was cancelled because of fog", "the bread tasted better with honey",
        "the clock in the hall was twenty minutes fast", "the garden needed rain",
    ),
    "thing": (
        "soup", "weather", "journey", "concert", "museum", "lecture", "garden", "bridge", "film",
        "harvest", "coffee", "hotel", "exhibition", "village fair", "ferry crossing", "new bakery",
    ),
    "quality": (
        "surprisingly warm", "rather expensive", "quite beautiful", "very quiet", "much too long",
        "wonderfully simple", "a little strange", "colder than expected", "full of people",
        "older than the town itself", "better than last year", "impossible to forget",
    ),
    "forecast_day": ("Tomorrow", "Tonight", "Saturday", "Sunday", "Monday morning", "The weekend", "Thursday"),
    "weather": (
        "cloudy", "mild", "bright and breezy", "wet", "foggy at first", "sunny", "cold and clear",
        "grey and damp", "warm and humid",
    ),
    "region": (
        "north", "south west", "east", "coastal areas", "hills", "islands", "central valleys",
        "northern mountains", "capital",
    ),
    "weather_detail": (
        "light winds from the west", "showers later in the afternoon",
        "temperatures around fifteen degrees", "a chance of thunder by evening",
        "clear skies overnight", "heavy rain along the coast", "a touch of frost before dawn",
        "sunny spells between the clouds",
    ),
    "plan": (
        "visit the old town", "travel by train", "bake this cake", "plant seeds in spring",
        "walk in the hills", "cook rice", "paint a room", "borrow a book", "camp by the lake",
        "buy fresh fish", "visit the museum", "cycle along the canal",
    ),
    "advice": (
        "bring a warm coat", "check the timetable", "use fresh butter", "water them every day",
        "carry a map", "rinse it first", "open the windows", "return it within three weeks",
        "pack a torch", "ask for the catch of the day", "book a ticket early", "wear a helmet",
    ),
    "org": (
        "The city council", "A local charity", "The national museum", "Researchers at the university",
        "The railway company", "The football club", "The hospital", "A small bakery",
        "The town library", "The orchestra",
    ),
    "news": (
        "plans for a new library", "a festival of music and dance",
        "the discovery of a rare orchid", "longer opening hours", "a competition for young artists",
        "the return of the summer market", "a study of sleep and memory",
        "a new bus route to the hospital", "free concerts in the park",
    ),
    "news_time": (
        "this morning", "earlier today", "last week", "yesterday evening", "at a press conference",
        "in a brief statement",
    ),
    "fact": (
        "honey can be kept for centuries", "octopuses have three hearts",
        "the moon is slowly drifting away from the earth", "bananas are berries",
        "some trees can live for thousands of years", "a group of crows is called a murder",
        "sound travels faster in water than in air", "the heart of a whale is as big as a small car",
        "owls cannot move their eyes", "there are more stars in the sky than grains of sand",
        "the Eiffel Tower grows taller in summer", "some frogs can freeze and thaw again",
        "elephants can hear through their feet", "penguins can drink sea water",
        "young sunflowers follow the sun across the sky", "hummingbirds can fly backwards",
        "the shortest war in history lasted less than an hour", "koalas sleep for most of the day",
        "sharks existed before trees", "a bolt of lightning is hotter than the surface of the sun",
        "Venus spins in the opposite direction to most planets", "sea otters hold hands while they sleep",
        "the Sahara was once green", "wombats produce cube shaped droppings",
        "a teaspoon of honey is the life work of twelve bees", "snails can sleep for three years",
    ),
    "step": ("Chop", "Slice", "Rinse", "Peel", "Mix", "Season", "Warm", "Crush", "Grate"),
    "ingredient": (
        "onions", "carrots", "garlic", "potatoes", "tomatoes", "mushrooms", "lemons", "fresh herbs",
        "apples", "beans",
    ),
    "cook": ("let it simmer", "bake it gently", "leave it to rest", "stir it slowly", "fry it in butter"),
    "duration": ("ten minutes", "half an hour", "about an hour", "a few minutes", "twenty minutes"),
})


def text_data_hash() -> str:
    """Hash of every built-in sentence and template word list."""
    blob = json.dumps([HANDWRITTEN, TEMPLATES, dict(SLOTS)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _pick(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _fill_template(rng: np.random.Generator, template: str) -> str:
    text = re.sub(r"\{(\w+)\}", lambda m: _pick(rng, SLOTS[m.group(1)]), template)
    return text[0].upper() + text[1:]


class SentenceSource:
    """Keyword-free sentences: built-in prose dealt in ``order`` from ``start``, or filled templates."""

    def __init__(self, rng: np.random.Generator, order: Sequence[int], start: int) -> None:
        self._rng = rng
        self._order = order
        self._pos = start

    def _handwritten(self) -> str:
        text = HANDWRITTEN[self._order[self._pos % len(self._order)]]
        self._pos += 1
        return text

    def sentence(self) -> str:
        """Next sentence that passes :func:`contains_keyword`."""
        for _ in range(1000):
            if self._rng.random() < HANDWRITTEN_SHARE:
                text = self._handwritten()
            else:
                text = _fill_template(self._rng, _pick(self._rng, TEMPLATES))
            if not contains_keyword(text):
                return text
        raise CorpusError("sentence generator produced only keyword sentences")


# --------------------------------------------------------------------------- synthesis


@dataclass(frozen=True)
class Voice:
    """A synthetic voice: ``engine`` is "espeak" or "flite", ``name`` the engine's voice."""

    engine: str
    name: str

    @property
    def id(self) -> str:
        return f"{self.engine}-{self.name}"

    def speed_label(self, speed: float) -> str:
        """Filename-safe speed: espeak words per minute or flite duration stretch."""
        return f"wpm{speed:.0f}" if self.engine == "espeak" else f"dur{speed:.2f}"

    def command(self, speed: float, text: str, out: Path) -> list[str]:
        if self.engine == "espeak":
            return ["espeak-ng", "-v", self.name, "-s", f"{speed:.0f}", "-w", str(out), text]
        return ["flite", "-voice", self.name, "--setf", f"duration_stretch={speed:.3f}",
                "-t", text, "-o", str(out)]


@dataclass(frozen=True)
class Tools:
    """Available synthesisers: flite voice names and version strings for cache keys."""

    flite_voices: tuple[str, ...]
    versions: str
    held_out: bool = False  # use the held-out voice pools (a validation corpus)


def _tool_output(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return (proc.stdout + proc.stderr).strip()


def detect_tools() -> Tools:
    """Check espeak-ng and flite are installed; raise CorpusError naming the package if not."""
    for exe in ("espeak-ng", "flite"):
        if shutil.which(exe) is None:
            raise CorpusError(f"{exe} not found: install it with `apt-get install {exe}`")
    listed = _tool_output(["flite", "-lv"]).split(":", 1)[-1].split()
    flite_voices = tuple(v for v in FLITE_VOICES if v in listed)
    versions = _tool_output(["espeak-ng", "--version"]) + " | " + _tool_output(["flite", "--version"])
    return Tools(flite_voices, versions)


def read_synth_wav(path: Path) -> tuple[np.ndarray, int]:
    """A synthesiser's 16-bit PCM WAV as mono float32 in [-1, 1), at its own rate.

    Not testsupport.audio.read_wav: that rounds to int16 at 16 kHz, and `synthesize` resamples
    the float samples once before trimming and peak-normalising (rounding first moves a third
    of an espeak clip's samples by 1 LSB, i.e. every corpus clip would change)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise CorpusError(f"{path}: expected 16-bit PCM")
        rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    x = data.reshape(-1, channels).mean(axis=1) / 32768.0
    return x.astype(np.float32), rate


def write_wav(path: Path, x: np.ndarray) -> None:
    """Write float audio as 16 kHz mono int16 WAV, atomically."""
    testsupport.audio.write_wav(path, np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16))


def synthesize(voice: Voice, speed: float, text: str) -> np.ndarray:
    """Speak ``text`` and return 16 kHz mono float32 audio."""
    with tempfile.TemporaryDirectory(prefix="kws-corpus-") as tmp:
        out = Path(tmp) / "speech.wav"
        proc = subprocess.run(voice.command(speed, text, out), capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            raise CorpusError(f"{voice.id} failed on {text!r}: {proc.stderr.strip()[:200]}")
        x, rate = read_synth_wav(out)
    if rate != SAMPLE_RATE:
        x = soxr.resample(x, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return x


# --------------------------------------------------------------------------- signal helpers


def energy_bounds(x: np.ndarray) -> tuple[int, int]:
    """Sample range of 5 ms frames within 40 dB of the loudest frame (and above -70 dBFS)."""
    n = len(x) // TRIM_FRAME
    if n == 0:
        raise CorpusError("synthesiser returned no audio")
    frames = x[: n * TRIM_FRAME].reshape(n, TRIM_FRAME).astype(np.float64)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
    active = np.flatnonzero(db >= max(db.max() + TRIM_REL_DB, TRIM_FLOOR_DBFS))
    if active.size == 0:
        raise CorpusError("synthesiser returned silence")
    return int(active[0] * TRIM_FRAME), int(min(len(x), (active[-1] + 1) * TRIM_FRAME))


def trim(x: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Cut ``x`` to its energy bounds plus a 20 ms margin, with 5 ms fades.

    Returns the segment and the word's start/end sample inside it.
    """
    start, end = energy_bounds(x)
    margin = int(TRIM_MARGIN_S * SAMPLE_RATE)
    lo, hi = max(0, start - margin), min(len(x), end + margin)
    seg = x[lo:hi].astype(np.float32)
    fade = min(int(FADE_S * SAMPLE_RATE), len(seg) // 2)
    ramp = np.linspace(0.0, 1.0, fade, endpoint=False, dtype=np.float32)
    seg[:fade] *= ramp
    seg[len(seg) - fade:] *= ramp[::-1]
    return seg, start - lo, end - lo


def peak_normalise(x: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """Scale ``x`` so its absolute peak is ``peak_dbfs``."""
    return x * np.float32(10 ** (peak_dbfs / 20) / max(float(np.max(np.abs(x))), 1e-9))


def make_noise(rng: np.random.Generator, n: int, rms_dbfs: float, pink: bool) -> np.ndarray:
    """Gaussian white or pink (-3 dB/octave IIR filter) noise of ``n`` samples at ``rms_dbfs``."""
    warmup = PINK_WARMUP if pink else 0
    x = rng.standard_normal(n + warmup, dtype=np.float32)
    if pink:
        x = scipy.signal.lfilter(PINK_B, PINK_A, x)[warmup:].astype(np.float32)
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return x * np.float32(10 ** (rms_dbfs / 20) / max(rms, 1e-12))


# --------------------------------------------------------------------------- cache


def params_hash(params: Any) -> str:
    """Stable short hash of JSON-serialisable parameters."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def read_manifest(outdir: Path) -> dict[str, Any]:
    """``OUTDIR/manifest.json`` as a dict (empty if absent)."""
    path = outdir / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_manifest(outdir: Path, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest.json`` atomically."""
    tmp = outdir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, outdir / "manifest.json")


def _parallel(fn: Callable[..., Any], items: Iterable[Any], workers: int) -> list[Any]:
    """``map`` over a thread pool (the work is in subprocesses); keeps order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


# --------------------------------------------------------------------------- keyword set


@dataclass(frozen=True)
class KeywordClip:
    """One planned keyword clip; ``rng_key`` seeds its level, noise and offset."""

    keyword: str
    voice: Voice
    speed: float
    n: int
    rng_key: tuple[int, ...]

    @property
    def relpath(self) -> str:
        return f"keywords/{self.keyword}/{self.voice.id}_{self.voice.speed_label(self.speed)}_{self.n:02d}.wav"


def keyword_voices(tools: Tools) -> list[tuple[Voice, tuple[float, ...]]]:
    """Voices and speeds used for the keyword set."""
    if tools.held_out:
        plan = [(Voice("espeak", v), HELD_OUT_KEYWORD_ESPEAK_WPM) for v in HELD_OUT_KEYWORD_ESPEAK_VOICES]
        return plan + [(Voice("flite", v), HELD_OUT_KEYWORD_FLITE_STRETCH) for v in tools.flite_voices]
    plan = [(Voice("espeak", v), KEYWORD_ESPEAK_WPM) for v in KEYWORD_ESPEAK_VOICES]
    plan += [(Voice("flite", v), KEYWORD_FLITE_STRETCH) for v in tools.flite_voices]
    return plan


def plan_keyword_clips(tools: Tools, seed: int) -> list[KeywordClip]:
    """Every keyword x voice x speed, numbered per keyword."""
    clips = []
    for k_idx, keyword in enumerate(KEYWORDS):
        combos = [(v, s) for v, speeds in keyword_voices(tools) for s in speeds]
        for n, (voice, speed) in enumerate(combos):
            clips.append(KeywordClip(keyword, voice, speed, n, (seed, 0, k_idx, n)))
    return clips


def render_keyword_clip(clip: KeywordClip, outdir: Path) -> dict[str, str]:
    """Synthesise, trim, level and place one keyword; write the WAV; return its CSV row."""
    rng = np.random.default_rng(clip.rng_key)
    level, noise_db, pink = rng.uniform(*KEYWORD_LEVEL_DBFS), rng.uniform(*KEYWORD_NOISE_DBFS), rng.random() < 0.5
    seg, w0, w1 = trim(synthesize(clip.voice, clip.speed, clip.keyword))
    total = int(CLIP_SECONDS * SAMPLE_RATE)
    room = total - len(seg)
    if room < int(0.1 * SAMPLE_RATE):
        raise CorpusError(f"{clip.relpath}: word is {len(seg) / SAMPLE_RATE:.2f} s, too long for the clip")
    offset = int(rng.integers(int(0.05 * SAMPLE_RATE), room - int(0.05 * SAMPLE_RATE) + 1))
    out = make_noise(rng, total, noise_db, pink)
    out[offset: offset + len(seg)] += peak_normalise(seg, level)
    write_wav(outdir / clip.relpath, out)
    return {
        "path": clip.relpath, "keyword": clip.keyword, "voice": clip.voice.id,
        "speed": clip.voice.speed_label(clip.speed),
        "word_start_s": f"{(offset + w0) / SAMPLE_RATE:.4f}",
        "word_end_s": f"{(offset + w1) / SAMPLE_RATE:.4f}",
    }


CSV_FIELDS = ("path", "keyword", "voice", "speed", "word_start_s", "word_end_s")


def build_keywords(outdir: Path, tools: Tools, seed: int, workers: int, manifest: dict[str, Any]) -> int:
    """Build the keyword set unless the cached one matches; return the clip count."""
    clips = plan_keyword_clips(tools, seed)
    key = params_hash([FORMAT_VERSION, seed, tools.versions, [c.relpath for c in clips],
                       CLIP_SECONDS, KEYWORD_LEVEL_DBFS, KEYWORD_NOISE_DBFS, TRIM_REL_DB])
    csv_path = outdir / "keywords.csv"
    cached = manifest.get("keywords", {}).get("hash") == key and csv_path.exists()
    if cached and all((outdir / c.relpath).exists() for c in clips):
        return len(clips)
    rows = _parallel(lambda c: render_keyword_clip(c, outdir), clips, workers)
    wanted = {outdir / c.relpath for c in clips}
    for stale in (outdir / "keywords").glob("*/*.wav"):
        if stale not in wanted:
            stale.unlink()
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    manifest["keywords"] = {"hash": key, "clips": len(clips),
                            "voices": sorted({c.voice.id for c in clips})}
    write_manifest(outdir, manifest)
    return len(clips)


def load_keyword_set(outdir: Path) -> list[tuple[Path, str]]:
    """(absolute WAV path, keyword) for every clip in ``OUTDIR/keywords.csv``."""
    outdir = Path(outdir)
    with open(outdir / "keywords.csv", newline="") as f:
        return [(outdir / row["path"], row["keyword"]) for row in csv.DictReader(f)]


# --------------------------------------------------------------------------- prose stream


@dataclass(frozen=True)
class Paragraph:
    """Consecutive sentences read by one voice at one speed and level."""

    voice: Voice
    speed: float
    level_dbfs: float
    sentences: tuple[str, ...]
    pauses: tuple[float, ...]

    def estimate_seconds(self) -> float:
        words = sum(len(s.split()) for s in self.sentences)
        rate = 160.0 / self.speed if self.voice.engine == "espeak" else self.speed
        return words * SECONDS_PER_WORD * rate + sum(self.pauses)


def prose_voice_pool(tools: Tools) -> tuple[list[Voice], list[Voice]]:
    """(espeak voices, flite voices) used for the prose stream."""
    variants = HELD_OUT_PROSE_ESPEAK_VARIANTS if tools.held_out else PROSE_ESPEAK_VARIANTS
    espeak = [Voice("espeak", b + v) for b in PROSE_ESPEAK_BASES for v in variants]
    return espeak, [Voice("flite", v) for v in tools.flite_voices]


def plan_paragraph(rng: np.random.Generator, source: SentenceSource, tools: Tools) -> Paragraph:
    """A random voice, speed, level and 3-7 sentences with pauses."""
    espeak, flite = prose_voice_pool(tools)
    if flite and rng.random() < PROSE_FLITE_SHARE:
        voice, speed = flite[int(rng.integers(len(flite)))], round(float(rng.uniform(*PROSE_FLITE_STRETCH)), 2)
    else:
        voice, speed = espeak[int(rng.integers(len(espeak)))], float(round(rng.uniform(*PROSE_ESPEAK_WPM)))
    level = float(rng.uniform(*PROSE_LEVEL_DBFS))
    count = int(rng.integers(PARAGRAPH_SENTENCES[0], PARAGRAPH_SENTENCES[1] + 1))
    sentences = tuple(source.sentence() for _ in range(count))
    pauses = tuple(float(rng.uniform(*PAUSE_SECONDS)) for _ in range(count))
    return Paragraph(voice, speed, level, sentences, pauses)


@dataclass
class ProseTrack:
    """Sentence audio and timing collected for one prose file."""

    chunks: list[np.ndarray] = field(default_factory=list)
    sentences: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 0

    def pad(self, seconds: float) -> None:
        """Append silence."""
        gap = np.zeros(int(round(seconds * SAMPLE_RATE)), dtype=np.float32)
        self.chunks.append(gap)
        self.samples += len(gap)

    def add(self, audio: np.ndarray, pause_s: float, meta: dict[str, Any]) -> None:
        """Append a sentence followed by a pause, recording its timing."""
        start = self.samples
        self.chunks.append(audio)
        self.samples += len(audio)
        self.sentences.append({**meta, "start_s": round(start / SAMPLE_RATE, 3),
                               "end_s": round(self.samples / SAMPLE_RATE, 3)})
        self.pad(pause_s)


def _render_sentence(job: tuple[Paragraph, str]) -> np.ndarray:
    paragraph, text = job
    seg, _, _ = trim(synthesize(paragraph.voice, paragraph.speed, text))
    return peak_normalise(seg, paragraph.level_dbfs)


def render_prose_file(path: Path, index: int, target_s: float, tools: Tools, seed: int,
                      workers: int) -> tuple[float, list[dict[str, Any]]]:
    """Synthesise paragraphs until ``target_s`` is reached; write the WAV; return (seconds, sentences)."""
    rng = np.random.default_rng((seed, 1, index))
    order = [int(i) for i in np.random.default_rng((seed, 3)).permutation(len(HANDWRITTEN))]
    source = SentenceSource(np.random.default_rng((seed, 3, index)), order, index * HANDWRITTEN_PER_FILE)
    track = ProseTrack()
    track.pad(float(rng.uniform(*PAUSE_SECONDS)))
    while track.samples < target_s * SAMPLE_RATE:
        budget = target_s - track.samples / SAMPLE_RATE
        paragraphs: list[Paragraph] = []
        while sum(p.estimate_seconds() for p in paragraphs) < budget * 1.1 + 5:
            paragraphs.append(plan_paragraph(rng, source, tools))
        jobs = [(p, s) for p in paragraphs for s in p.sentences]
        pauses = [pause for p in paragraphs for pause in p.pauses]
        for (p, text), audio, pause in zip(jobs, _parallel(_render_sentence, jobs, workers), pauses):
            if track.samples >= target_s * SAMPLE_RATE:
                break
            track.add(audio, pause, {"text": text, "voice": p.voice.id, "speed": p.voice.speed_label(p.speed)})
    audio = np.concatenate(track.chunks)
    noise_rng = np.random.default_rng((seed, 2, index))
    audio += make_noise(noise_rng, len(audio), float(noise_rng.uniform(*PROSE_NOISE_DBFS)), pink=True)
    write_wav(path, audio)
    return len(audio) / SAMPLE_RATE, track.sentences


def write_prose_text(outdir: Path, entries: Mapping[str, Any]) -> Path:
    """Write ``prose.txt``: one tab-separated line per sentence with file, timing, voice and text."""
    lines = ["# file\tstart_s\tend_s\tvoice\tspeed\ttext"]
    for name in sorted(entries):
        for s in entries[name]["sentences"]:
            lines.append(f"{name}\t{s['start_s']:.3f}\t{s['end_s']:.3f}\t{s['voice']}\t{s['speed']}\t{s['text']}")
    path = outdir / "prose.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def build_prose(outdir: Path, minutes: float, tools: Tools, seed: int, workers: int,
                manifest: dict[str, Any]) -> tuple[list[Path], float]:
    """Build (or reuse) the prose WAVs; return their paths and total seconds."""
    n_files = max(1, math.ceil(minutes / PROSE_FILE_MINUTES))
    target_s = minutes * 60.0 / n_files
    espeak, flite = prose_voice_pool(tools)
    common = [FORMAT_VERSION, seed, target_s, tools.versions, text_data_hash(),
              [v.id for v in espeak + flite], PAUSE_SECONDS, PROSE_LEVEL_DBFS, PROSE_NOISE_DBFS]
    old = manifest.get("prose", {})
    entries: dict[str, Any] = {}
    for i in range(n_files):
        name = f"prose_{i:02d}.wav"
        path = outdir / "prose" / name
        key = params_hash(common + [i])
        if old.get(name, {}).get("hash") == key and path.exists():
            entries[name] = old[name]
            continue
        seconds, sentences = render_prose_file(path, i, target_s, tools, seed, workers)
        entries[name] = {"hash": key, "seconds": seconds, "sentences": sentences}
        manifest["prose"] = {**old, **entries}
        write_manifest(outdir, manifest)
    for stale in (outdir / "prose").glob("prose_*.wav"):
        if stale.name not in entries:
            stale.unlink()
    manifest["prose"] = entries
    write_manifest(outdir, manifest)
    write_prose_text(outdir, entries)
    files = [outdir / "prose" / name for name in sorted(entries)]
    return files, float(sum(e["seconds"] for e in entries.values()))


# --------------------------------------------------------------------------- API and CLI


@dataclass(frozen=True)
class CorpusPaths:
    """Where a built corpus lives."""

    keyword_csv: Path
    keyword_dir: Path
    prose_files: list[Path]
    prose_seconds: float
    prose_text: Path


def build_corpus(outdir: Path, minutes: float = 30, seed: int = 0, workers: int = 2,
                 held_out: bool = False) -> CorpusPaths:
    """Build (or reuse from cache) the keyword set and the keyword-free prose stream."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    tools = dataclasses.replace(detect_tools(), held_out=held_out)
    manifest = read_manifest(outdir)
    build_keywords(outdir, tools, seed, workers, manifest)
    prose_files, seconds = build_prose(outdir, minutes, tools, seed, workers, manifest)
    return CorpusPaths(outdir / "keywords.csv", outdir / "keywords", prose_files, seconds,
                       outdir / "prose.txt")


def _summary(paths: CorpusPaths, elapsed: float) -> str:
    manifest = read_manifest(paths.keyword_csv.parent)
    prose_voices = sorted({s["voice"] for e in manifest["prose"].values() for s in e["sentences"]})
    clips = load_keyword_set(paths.keyword_csv.parent)
    return "\n".join((
        f"built in {elapsed:.1f} s",
        f"keyword clips: {len(clips)} ({len(clips) // len(KEYWORDS)} per keyword) in {paths.keyword_dir}",
        f"keyword voices: {', '.join(manifest['keywords']['voices'])}",
        f"prose: {len(paths.prose_files)} files, {paths.prose_seconds / 60:.2f} min, "
        f"{len(prose_voices)} voices; text in {paths.prose_text}",
    ))


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.corpus", description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path, help="cache directory to build into")
    parser.add_argument("--minutes", type=float, default=30.0, help="minimum prose minutes (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--workers", type=int, default=2, help="parallel synthesis processes (default 2)")
    parser.add_argument("--held-out", action="store_true",
                        help="voices the tuning corpus never uses (build a validation corpus)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.workers < 1:
        parser.error("--minutes must be > 0 and --workers >= 1")
    t0 = time.monotonic()
    try:
        paths = build_corpus(args.outdir, args.minutes, args.seed, args.workers, args.held_out)
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_summary(paths, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
