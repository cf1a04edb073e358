"""Where an enrolled word is judged: the audio of each command-shaped burst of a stream.

The command gate finds, from the hop levels alone, the bursts of speech shaped like a
command (a short burst with a pause around it: `CommandGate.bursts`, the `[command]`
rules). It gives one span per word a window can see in a stretch of speech, and as the
noise floor settles after a word it gives the same word again with a longer tail, over a
few hops. So `BurstCutter` gathers the spans of one stretch for SETTLE_S after the first
and then gives the stretch once: its audio from the stretch's first hop to the last hop of
its spans, plus `enrol.BURST_MARGIN_S` each side, as soon as that much is heard.
`cut_bursts` does the same over a whole recording: what a running spotter would score in it
(for `enroll`'s check of a take, and for benchmarks that must score what the product scores).

The cutter keeps a levels-only `CommandGate` of its own rather than sharing the model's:
plain mode has none, and command mode's scheduler consumes its gate's bursts as it runs the
model around them. Both gates see the same levels with the same rules, so they find the
same bursts; the cost is the gate's per-hop step (~5 us, `benchmarks.words_overhead`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .bursts import Span
from .command import CommandGate, CommandParams
from .features import FeatureParams, FeatureWindow, MfccExtractor

SETTLE_S = 0.2
"""How long after the first span of a stretch its others are gathered (on the custom-words
recordings they came at most 0.1 s after the first, and the longest tail 0.22 s after it,
when the margin after the burst has mostly been heard anyway)."""



class Cut(NamedTuple):
    """One burst's audio to score, and the word inside it (stream samples, [start, end))."""

    start: int  # the audio: the word and `margin` samples either side, as far as heard
    end: int
    word_start: int  # the word: its stretch's first hop to its last span's end
    word_end: int


@dataclass
class _Stretch:
    """A stretch of speech with command-shaped bursts, waiting to be given (samples)."""

    start: int
    end: int
    settled: int  # its spans are gathered until then
    word_start: int
    word_end: int


class BurstCutter:
    """Hop levels in, the sample ranges of command-shaped bursts out; one per stream.
    A cutter made mid-stream (a reload) starts at `first_hop`, which counts as the start."""

    def __init__(self, command: CommandParams = CommandParams(), features: FeatureParams = FeatureParams(),
                 first_hop: int = 0, margin_s: float | None = None) -> None:
        from .enrol import BURST_MARGIN_S

        self._features = features
        self.margin = round((BURST_MARGIN_S if margin_s is None else margin_s) * features.sample_rate)
        """Samples of audio added before and after each burst (`enrol.BURST_MARGIN_S` unless given)."""
        self._settle = round(SETTLE_S * features.sample_rate)
        self._gate = CommandGate(command, None, geometry=features.geometry, first_hop=first_hop)
        self._waiting: dict[int, _Stretch] = {}  # by the first hop of the stretch
        self._given: deque[int] = deque(maxlen=16)  # stretches given lately: their later spans are ignored

    def hop(self, level_db: float, end_sample: int) -> list[Cut]:
        """The next hop's level (`end_sample`: the stream position of its end); the bursts
        whose audio is complete now."""
        self._gate.observe(level_db, end_sample)
        found = self._gate.bursts()
        if found:
            self._gather(found, end_sample)
        return self._ready(end_sample, final=False) if self._waiting else []

    def finish(self, heard: int) -> list[Cut]:
        """End of stream (`heard` samples): it counts as the silence after the last burst."""
        self._gather(self._gate.bursts(final=True), heard)
        return self._ready(heard, final=True)

    def _gather(self, spans: list[Span], now: int) -> None:
        f = self._features
        for stretch, _, last in spans:
            if stretch in self._given:
                continue
            word_end = f.frame_end(last)
            item = self._waiting.get(stretch)
            if item is None:
                word_start = f.frame_end(stretch) - f.frame_step
                self._waiting[stretch] = _Stretch(max(0, word_start - self.margin), word_end + self.margin,
                                                  now + self._settle, word_start, word_end)
            else:
                item.end = max(item.end, word_end + self.margin)
                item.word_end = max(item.word_end, word_end)

    def _ready(self, heard: int, final: bool) -> list[Cut]:
        ready: list[Cut] = []
        for stretch, item in list(self._waiting.items()):
            if not final and (item.end > heard or item.settled > heard):
                continue  # the margin after it, or its other spans, may still come
            del self._waiting[stretch]
            self._given.append(stretch)
            ready.append(Cut(item.start, min(item.end, heard), max(0, item.word_start), min(item.word_end, heard)))
        return ready


def cuts_of(audio: np.ndarray, command: CommandParams = CommandParams(), margin_s: float | None = None) -> list[Cut]:
    """Every command-shaped burst of a 16 kHz int16 mono recording, cut as a running spotter
    cuts it to score enrolled words (the recording is one stream; its end counts as silence)."""
    features = FeatureWindow(MfccExtractor())  # only its hop levels: no MFCC is computed
    cutter = BurstCutter(command, features.params, margin_s=margin_s)
    cuts: list[Cut] = []
    for hop in features.push(np.asarray(audio, dtype=np.int16).reshape(-1)):
        cuts += cutter.hop(hop.level_db, hop.end_sample)
    return cuts + cutter.finish(features.samples_pushed)


def cut_bursts(audio: np.ndarray, command: CommandParams = CommandParams()) -> list[np.ndarray]:
    """The audio each burst of `audio` is scored on (the word and `BURST_MARGIN_S` each side)."""
    return [np.asarray(audio[c.start:c.end], dtype=np.int16) for c in cuts_of(audio, command)]
