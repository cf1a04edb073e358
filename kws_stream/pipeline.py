"""The spotting pipeline for one audio stream: features -> model -> decision.

A plain object driven synchronously: `feed()` 16 kHz int16 blocks in, detections
out. `kws-stream detect` drives it from a file; the daemon drives the very same
object from its capture thread's ring buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .backend import KeywordModel
from .decision import Decision, DecisionParams, KeywordDecider
from .events import Detection
from .features import FeatureWindow, MfccExtractor


@dataclass(frozen=True)
class PipelineParams:
    stride: int = 1  # run the model every `stride` hops (20 ms each)
    decision: DecisionParams = DecisionParams()


class Pipeline:
    """Streaming keyword spotting over one stream; not thread-safe, one per stream."""

    def __init__(self, model: KeywordModel, model_name: str, source: str,
                 params: PipelineParams = PipelineParams(),
                 clock: Callable[[], str | None] = lambda: None) -> None:
        self.model = model
        self.model_name = model_name
        self.source = source
        self.params = params
        self._clock = clock
        self._extractor = MfccExtractor()
        self.features = FeatureWindow(self._extractor)
        self.decider = KeywordDecider(model.labels, params.decision)
        self._rate = self.features.params.sample_rate
        self._evaluated_frame = -1  # frames_total at the last inference
        self.inferences = 0

    def reconfigure(self, params: PipelineParams) -> None:
        """New thresholds/keywords/stride without losing the audio already seen."""
        self.params = params
        self.decider = KeywordDecider(self.model.labels, params.decision)

    @property
    def samples_seen(self) -> int:
        return self.features.samples_covered

    def feed(self, samples: np.ndarray) -> list[Detection]:
        """Process a block of 16 kHz mono int16 audio; returns any detections."""
        detections: list[Detection] = []
        num_frames = self.features.params.num_frames
        for frames_total in self.features.push(samples):
            due = frames_total >= num_frames and (frames_total - num_frames) % self.params.stride == 0
            if due:
                detections.extend(self._infer())
        return detections

    def finish(self) -> list[Detection]:
        """End of stream: evaluate the last window if the stride skipped it."""
        if self.features.ready and self._evaluated_frame != self.features.frames_total:
            return self._infer()
        return []

    def _infer(self) -> list[Detection]:
        self._evaluated_frame = self.features.frames_total
        self.inferences += 1
        probabilities = self.model.probabilities(self.features.window())
        decision = self.decider.update(probabilities, self.features.samples_covered, self._rate)
        return [self._detection(decision)] if decision else []

    def _detection(self, decision: Decision) -> Detection:
        end = decision.end_sample / self._rate
        window = self.features.params.window_samples / self._rate
        return Detection(keyword=decision.keyword, score=decision.score, start=max(0.0, end - window),
                         end=end, source=self.source, model=self.model_name, time=self._clock())
