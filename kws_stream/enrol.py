"""Words a user enrols from a few recordings, matched on command-shaped bursts (issue 23).

A take is refused unless it holds exactly one command-shaped burst (as the command gate
finds them, `enrol_bursts`), unclipped and loud enough. Each take's burst, with
`BURST_MARGIN_S` of audio on each side, becomes a template: its sequence of openWakeWord
speech embeddings (`enrol_embed`, one per 80 ms), with a radius, its DTW distance to the
nearest stretch of a bank of real running speech (`enrol_bank`). A burst's score is
max over templates of r / (r + d), d its DTW distance to the template: 0.5 when it is
exactly as close as the nearest negative speech, 1 for the template itself. Chosen by
measurement over MicroNet's MFCC (see docs/enrolled-words.md, `benchmarks.enrolled_words`).

The file format (`EnrolledWord.to_bytes`) is versioned: MAGIC, a JSON header line, then
the templates as little-endian float32, and a CRC-32 of everything before it.
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .command import CommandParams
from .contour import CORE_DROP_DB
from .enrol_bank import load_bank, radius
from .enrol_bursts import HopSpan, find_bursts, with_margins
from .enrol_dtw import cosine_costs, dtw_distance
from .enrol_embed import EMBEDDING_SIZE, SpeechEmbedding, models_dir
from .errors import KwsError
from .features import MICRONET, hop_level_db

BURST_MARGIN_S = 0.5
"""Audio the caller adds before and after a burst's hops. Measured on the dev split: 0.25 s
after it (no wait past the gate's verdict) cost 1.3 points of recall, 0.3 s each side ~5,
0.15 s ~18: the embedding sees 775 ms at a time and needs the context."""
DEFAULT_THRESHOLD = 0.52
"""Fires when a burst is closer to a take than 0.92 times the take's nearest negative speech
(0.5 would be as close as it). Chosen on the dev split (`benchmarks.enrolled_words --sweep`):
the lowest threshold with at most 2 false accepts per 100 keyword clips (0.50 gave 2.3)."""
MIN_TAKES, MAX_TAKES = 3, 10
MAX_TAKE_S = 10.0  # a take is one word with a pause around it; longer is a wrong file
CLIPPED_SAMPLES = 0.001  # more than 0.1 % of samples at full scale: clipped
QUIET_DBFS = -50.0  # the loudest 20 ms below this: too quiet to be a word said to the device
OTHER_SPEECH_S = 0.3  # more speech than this away from the word: not a take of one word
MAGIC = b"KWS-ENROLLED-WORD\n"
FORMAT_VERSION = 1
FEATURE = "openwakeword-embedding-80ms"
NAME = re.compile(r"[A-Za-z0-9_]{1,64}")


class EnrolError(KwsError):
    """A take or an enrolled word's file that cannot be used; one line naming it."""

    exit_code = 2  # bad input, as a bad WAV for `detect`


def check_take(audio: np.ndarray) -> str | None:
    """Why a take (16 kHz int16 mono) cannot be enrolled, or None if it can."""
    audio = np.asarray(audio)
    rate = MICRONET.sample_rate
    if audio.dtype != np.int16 or audio.ndim != 1:
        return f"not 16 kHz mono int16 audio ({audio.dtype}, shape {audio.shape})"
    if len(audio) < MICRONET.window_samples // 2:
        return f"too short ({len(audio) / rate:.2f} s): record the word with a pause before and after it"
    if len(audio) > MAX_TAKE_S * rate:
        return f"too long ({len(audio) / rate:.1f} s, at most {MAX_TAKE_S:g} s): one word per take"
    clipped = int(np.count_nonzero((audio == 32767) | (audio <= -32767)))
    if clipped > CLIPPED_SAMPLES * len(audio):
        return f"clipped ({clipped} samples at full scale): speak further from the microphone or lower its gain"
    hop = MICRONET.hop_samples
    levels = np.array([hop_level_db(audio[k:k + hop]) for k in range(0, len(audio) - hop + 1, hop)])
    loudest = float(levels.max())
    if loudest < QUIET_DBFS:
        return f"too quiet (loudest {loudest:.0f} dBFS, at least {QUIET_DBFS:g}): speak closer or raise the gain"
    bursts = find_bursts(audio)
    if not bursts:
        return ("no word with a pause around it (silence, noise, or speech longer than a command "
                f"of at most {_max_word():g} s): say the word once, with a pause before and after")
    if len(bursts) > 1:
        return f"{len(bursts)} separate bursts of speech: say the word once per take"
    besides = _speech_besides(levels, bursts[0])
    if besides > OTHER_SPEECH_S:
        return f"{besides:.1f} s of other speech besides the word: say only the word, in a quiet room"
    return None


def _speech_besides(levels: np.ndarray, burst: HopSpan) -> float:
    """Seconds of speech-loud hops (the speech margin above the take's quiet, and within
    CORE_DROP_DB + 10 of its peak) more than 0.2 s away from the burst: a sentence in which
    the gate found one isolated word is no take of it."""
    floor = float(np.percentile(levels, 10))
    loud = levels >= max(floor + CommandParams().speech_margin_db, float(levels.max()) - CORE_DROP_DB - 10.0)
    near = MICRONET.hops(0.2)
    # hop k's level here is samples [k, k+1) hops; the gate's hop k ends at frame_end(k) (one hop later)
    first, last = burst.first + 1 - near, burst.last + 1 + near
    outside = np.ones(len(levels), dtype=bool)
    outside[max(0, first):max(0, last + 1)] = False
    return float(np.count_nonzero(loud & outside)) * MICRONET.hop_seconds


def _max_word() -> float:
    return CommandParams().max_word


@dataclass(frozen=True, eq=False)
class EnrolledWord:
    """An enrolled word: its name, threshold (on `WordMatcher.score`) and templates, each
    (n_i, 96) float32 speech embeddings with its radius. Equal when all of that is equal
    (so a reload can tell a changed word from the same one); hashable."""

    name: str
    threshold: float
    templates: tuple[np.ndarray, ...] = ()
    radii: tuple[float, ...] = ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EnrolledWord):
            return NotImplemented
        return (self.name, self.threshold, self.radii) == (other.name, other.threshold, other.radii) \
            and len(self.templates) == len(other.templates) \
            and all(np.array_equal(a, b) for a, b in zip(self.templates, other.templates))

    def __hash__(self) -> int:
        return hash((self.name, self.threshold, self.radii))

    def to_bytes(self) -> bytes:
        header = {"format": FORMAT_VERSION, "feature": FEATURE, "name": self.name, "threshold": self.threshold,
                  "margin_s": BURST_MARGIN_S, "frames": [len(t) for t in self.templates],
                  "radii": list(self.radii)}
        body = MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n"
        body += b"".join(np.asarray(t, dtype="<f4").tobytes() for t in self.templates)
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> EnrolledWord:
        """EnrolError (one line) for anything but an intact file of this version."""
        if not data.startswith(MAGIC):
            raise EnrolError("not an enrolled word file (wrong header)")
        if len(data) < len(MAGIC) + 4 or struct.unpack("<I", data[-4:])[0] != zlib.crc32(data[:-4]):
            raise EnrolError("enrolled word file is damaged (checksum mismatch): enrol the word again")
        line_end = data.find(b"\n", len(MAGIC))
        try:
            header = json.loads(data[len(MAGIC):line_end])
            version, feature = header["format"], header["feature"]
            if version != FORMAT_VERSION or feature != FEATURE:
                raise EnrolError(f"enrolled word file has format {version} ({feature}); this kws-stream "
                                 f"reads format {FORMAT_VERSION} ({FEATURE}): enrol the word again")
            name, threshold = str(header["name"]), float(header["threshold"])
            frames, radii = [int(n) for n in header["frames"]], tuple(float(r) for r in header["radii"])
        except (ValueError, KeyError, TypeError) as exc:
            raise EnrolError(f"enrolled word file has a bad header ({exc})") from None
        payload = data[line_end + 1:-4]
        if len(payload) != 4 * EMBEDDING_SIZE * sum(frames) or len(radii) != len(frames) or not frames:
            raise EnrolError("enrolled word file's templates do not match its header")
        values = np.frombuffer(payload, dtype="<f4").astype(np.float32)
        bounds = np.cumsum([n * EMBEDDING_SIZE for n in frames])[:-1]
        templates = tuple(v.reshape(-1, EMBEDDING_SIZE) for v in np.split(values, bounds))
        if not NAME.fullmatch(name) or not all(math.isfinite(r) and r > 0 for r in radii) \
                or not np.isfinite(values).all() or not 0 < threshold < 1:
            raise EnrolError("enrolled word file holds values out of range")
        return cls(name, threshold, templates, radii)


class WordMatcher:
    """Enrols words and scores bursts against them; holds the embedding models and the
    negative speech bank, so build one per process (`load_matcher`). Thread-safe."""

    def __init__(self, embedding: SpeechEmbedding, bank: list[np.ndarray]) -> None:
        self.embedding = embedding
        self.bank = bank

    def templates(self, take: np.ndarray) -> np.ndarray:
        """The embeddings of a checked take's one burst, with BURST_MARGIN_S on each side."""
        burst = with_margins(take, find_bursts(take)[0], BURST_MARGIN_S)
        return self.embedding.embed(burst)

    def enrol(self, name: str, takes: Sequence[np.ndarray]) -> EnrolledWord:
        """An EnrolledWord from 3-10 takes (16 kHz int16 mono); EnrolError on a bad take."""
        if not NAME.fullmatch(name):
            raise EnrolError(f"word name {name!r}: use letters, digits and _ only (at most 64)")
        if not MIN_TAKES <= len(takes) <= MAX_TAKES:
            raise EnrolError(f"{len(takes)} takes of {name!r}: enrol from {MIN_TAKES} to {MAX_TAKES}")
        for k, take in enumerate(takes, 1):
            problem = check_take(take)
            if problem is not None:
                raise EnrolError(f"take {k}: {problem}")
        templates = tuple(self.templates(np.asarray(t)) for t in takes)
        radii = tuple(radius(t, self.bank) for t in templates)
        return EnrolledWord(name, DEFAULT_THRESHOLD, templates, radii)

    def score(self, word: EnrolledWord, burst: np.ndarray) -> float:
        """How well `burst` (its audio with BURST_MARGIN_S each side) matches `word`, in (0, 1]:
        the best template's r / (r + d). Fires when >= word.threshold."""
        return self.score_features(word, self.embedding.embed(np.asarray(burst, dtype=np.int16)))

    def scores(self, words: Sequence[EnrolledWord], burst: np.ndarray) -> list[float]:
        """`score` of one burst for each of `words`, embedding it once (the embedding is nearly
        all of a score's cost, so a second word costs a DTW, not another embedding)."""
        features = self.embedding.embed(np.asarray(burst, dtype=np.int16))
        return [self.score_features(word, features) for word in words]

    @staticmethod
    def score_features(word: EnrolledWord, features: np.ndarray) -> float:
        """`score` of a burst already embedded (benchmarks score each burst for many words)."""
        best = 0.0
        for template, r in zip(word.templates, word.radii):
            d = dtw_distance(cosine_costs(template, features))
            best = max(best, r / (r + d) if r + d > 0 else 1.0)
        return best


def load_matcher() -> WordMatcher:
    """The matcher with its models and bank; KwsError (one line: what to install) if missing."""
    folder = models_dir()
    return WordMatcher(SpeechEmbedding(folder), load_bank())
