"""The audio `benchmarks.enrolled_words` measures on, cut into bursts as the product cuts them.

Every stream goes through `kws_stream.enrol_bursts.find_bursts` (the command gate, levels
only), so a false accept counted here is one the running product could make. Each burst is
kept as its audio with `MAX_MARGIN_S` on each side (trimmed to the matcher's margin later).

Sets, each split in a dev part (tuned on) and a validation part (never tuned on):
* ``custom``: shared/audio/custom-words, 150 recordings each of computer, jarvis and
  smart_mirror, padded with 0.5 s of room tone; dev = even file index, val = odd;
* ``clips``: shared/audio/keywords and real-keywords (short keyword commands), padded the
  same way; dev = even position in the sorted list, val = odd;
* ``speech``: shared/audio/real-dev, half the speakers each (`command_mode.real_dev_split`),
  the utterances joined with quiet gaps (`command_mode.gapped`); FA per hour of its speech.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.command_mode import RATE, gapped, padded, real_dev_split
from kws_stream.enrol_bursts import find_bursts, with_margins
from testsupport.audio import AUDIO, read_wav

WORDS = ("computer", "jarvis", "smart_mirror")
MAX_MARGIN_S = 0.5
CACHE_VERSION = b"enrol-bursts-1-cutter"


@dataclass
class Recording:
    """One stream and its bursts (audio with MAX_MARGIN_S each side, and hop length)."""

    name: str
    label: str  # the custom word it holds, "" for none
    bursts: list[np.ndarray] = field(default_factory=list)
    hops: list[int] = field(default_factory=list)
    take: np.ndarray | None = None  # the recording itself (custom words: enrolment takes)


@dataclass
class Split:
    custom: dict[str, list[Recording]]  # word -> its recordings
    clips: list[Recording]
    speech: list[Recording]
    speech_hours: float


def _cut(name: str, label: str, audio: np.ndarray, keep: bool = False) -> Recording:
    rec = Recording(name, label, take=audio if keep else None)
    for span in find_bursts(audio):
        rec.bursts.append(with_margins(audio, span, MAX_MARGIN_S))
        rec.hops.append(span.hops)
    return rec


def load_split(split: str, cache: Path) -> Split:
    key = hashlib.sha1(CACHE_VERSION + split.encode() + Path(__file__).read_bytes()).hexdigest()[:16]
    path = cache / f"enrol-{split}-{key}.pkl"
    if path.exists():
        with open(path, "rb") as cached:
            data: Split = pickle.load(cached)
            return data
    parity = 0 if split == "dev" else 1
    custom: dict[str, list[Recording]] = {}
    for word in WORDS:
        files = sorted((AUDIO / "custom-words").glob(f"{word}_*.wav"))
        custom[word] = [_cut(f.name, word, padded(x), keep=True)
                        for f in files if int(f.stem.rsplit("_", 1)[1]) % 2 == parity
                        for x in [read_wav(f)]]
    clip_files = sorted((AUDIO / "keywords").glob("*.wav")) + sorted((AUDIO / "real-keywords").glob("*.wav"))
    clips = [_cut(f.name, "", padded(read_wav(f))) for f in clip_files[parity::2]]
    real = [read_wav(p) for p in real_dev_split(split)]
    audio, _ = gapped(real)
    speech = [_cut(f"real-dev:{split}", "", audio)]
    out = Split(custom, clips, speech, sum(len(x) for x in real) / RATE / 3600)
    cache.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as sink:
        pickle.dump(out, sink)
    return out
