"""Command-shaped bursts in a recording, found as the running product finds them.

An enrolled word is judged only on bursts the command gate takes for a command from the
levels alone (`CommandGate.bursts()`): a short stretch of speech with a pause around it.
`find_bursts` drives a gate over a whole recording, hop by hop, exactly as `pipeline`'s
event-driven scheduler does, so an enrolment take and a benchmark stream are cut the
same way the live stream is. The gate returns several spans for one stretch (each word a
window ending inside it can see: "com" and "computer"); overlapping spans are merged into
one burst, the stretch a user heard as one word.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .command import CommandGate, CommandParams
from .features import MICRONET, FeatureWindow, MfccExtractor, StreamGeometry


class HopSpan(NamedTuple):
    """A burst as hops of the stream: `first`..`last` inclusive (hop k is the 20 ms that
    ends at `geometry.frame_end(k)`, the hop whose level the gate measured)."""

    first: int
    last: int

    def samples(self, geometry: StreamGeometry = MICRONET, margin_s: float = 0.0) -> tuple[int, int]:
        """The burst's audio as [start, end) sample positions, widened by `margin_s` each side."""
        hop = geometry.hop_samples
        end = self.last * hop + geometry.frame_samples
        start = end - (self.last - self.first + 1) * hop
        margin = round(margin_s * geometry.sample_rate)
        return max(0, start - margin), end + margin

    @property
    def hops(self) -> int:
        return self.last - self.first + 1


def merge_spans(spans: list[tuple[int, int, int]]) -> list[HopSpan]:
    """The gate's (stretch, first, last) spans, overlapping ones merged, in time order."""
    merged: list[HopSpan] = []
    for _, first, last in sorted(spans, key=lambda s: (s[1], s[2])):
        if merged and first <= merged[-1].last:
            merged[-1] = HopSpan(merged[-1].first, max(merged[-1].last, last))
        else:
            merged.append(HopSpan(first, last))
    return merged


def find_bursts(audio: np.ndarray, params: CommandParams = CommandParams()) -> list[HopSpan]:
    """The command-shaped bursts of 16 kHz int16 mono `audio` (the end counts as silence),
    found from the hop levels alone by a fresh `CommandGate`."""
    features = FeatureWindow(MfccExtractor())  # only its hop levels: no MFCC is computed
    gate = CommandGate(params)
    spans: list[tuple[int, int, int]] = []
    for hop in features.push(audio):
        gate.observe(hop.level_db, hop.end_sample)
        spans.extend(gate.bursts())
    spans.extend(gate.bursts(final=True))
    return merge_spans(spans)


def with_margins(audio: np.ndarray, span: HopSpan, margin_s: float, geometry: StreamGeometry = MICRONET) -> np.ndarray:
    """The burst `span` of a whole recording `audio` with `margin_s` on each side; a burst
    at the recording's very start or end gets silence for the margin it lacks."""
    margin = round(margin_s * geometry.sample_rate)
    start, end = span.samples(geometry)
    edged = np.concatenate([np.zeros(margin, np.int16), np.asarray(audio, dtype=np.int16), np.zeros(margin, np.int16)])
    return edged[start:end + 2 * margin]
