"""Command-shaped bursts in a recording, found as the running product finds them.

An enrolled word is judged only on bursts the command gate takes for a command from the
levels alone (`CommandGate.bursts()`): a short stretch of speech with a pause around it.
`find_bursts` cuts a whole recording with the running spotter's own cutter
(`wordbursts.BurstCutter`), so an enrolment take and a benchmark stream are cut the
same way the live stream is: the gate's several spans of one stretch of speech ("com"
and "computer") are one burst, the stretch a user heard as one word.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .command import CommandParams
from .features import MICRONET, StreamGeometry
from .wordbursts import cuts_of


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


def find_bursts(audio: np.ndarray, params: CommandParams = CommandParams(),
                geometry: StreamGeometry = MICRONET) -> list[HopSpan]:
    """The command-shaped bursts of 16 kHz int16 mono `audio` (the end counts as silence),
    as hops: the very bursts a running spotter scores (`wordbursts.cuts_of`)."""
    step, length = geometry.hop_samples, geometry.frame_samples
    return [HopSpan((c.word_start + step - length) // step, (c.word_end - length) // step)
            for c in cuts_of(audio, params, margin_s=0.0)]


def with_margins(audio: np.ndarray, span: HopSpan, margin_s: float, geometry: StreamGeometry = MICRONET) -> np.ndarray:
    """The burst `span` of a whole recording `audio` with `margin_s` on each side; a burst
    at the recording's very start or end gets silence for the margin it lacks."""
    margin = round(margin_s * geometry.sample_rate)
    start, end = span.samples(geometry)
    edged = np.concatenate([np.zeros(margin, np.int16), np.asarray(audio, dtype=np.int16), np.zeros(margin, np.int16)])
    return edged[start:end + 2 * margin]
