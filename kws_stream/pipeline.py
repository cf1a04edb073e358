"""The spotting pipeline for one audio stream: features -> model -> decision.

A plain object driven synchronously: `feed()` 16 kHz int16 blocks in, detections
out. `kws-stream detect` drives it from a file; the daemon drives the very same
object from its capture thread's ring buffer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .backend import KeywordModel
from .command import CommandGate, CommandParams, hop_level_db
from .decision import Decision, DecisionParams, KeywordDecider
from .events import Detection
from .features import FeatureWindow, MfccExtractor
from .silence import SilenceGate, SilenceParams


@dataclass(frozen=True)
class PipelineParams:
    stride: int = 1  # run the model every `stride` hops (20 ms each)
    decision: DecisionParams = DecisionParams()
    command: CommandParams = CommandParams()  # command mode (on by default); enabled=False: plain spotting
    silence: SilenceParams = SilenceParams()  # skip inference while quiet (off by default)


class Pipeline:
    """Streaming keyword spotting over one stream; not thread-safe, one per stream.

    With command mode on (the default) the decider's detections pass through a
    `CommandGate`: a keyword is reported only when spoken as a command, once the short
    silence after it has been heard (so `feed` may return it a few blocks later, and
    `finish` flushes what the end of the stream completes). A detection's `start`/`end`
    stay those of the 1 s window that fired, in both modes.
    """

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
        self.inference_observer: Callable[[float], None] | None = None
        """Called with each model invoke's duration in seconds (metrics)."""
        self.gate = self._new_gate(params.command)
        self.silence = self._new_silence(params.silence)
        self._tail = np.zeros(0, dtype=np.int16)  # audio after the newest frame's end
        self._fed = 0  # samples fed so far
        self.rejection_observer: Callable[[Detection, str], None] | None = None
        """Called with each candidate command mode rejects and the rule that did (`--explain`)."""

    def _new_gate(self, command: CommandParams) -> CommandGate | None:
        if not command.enabled:
            return None
        gate = CommandGate(command, self._rate, self.features.params.window_samples,
                           self.model.labels, self.params.decision)
        gate.on_reject = self._rejected
        return gate

    def _rejected(self, decision: Decision, rule: str) -> None:
        if self.rejection_observer is not None:
            self.rejection_observer(self._detection(decision), rule)

    def _new_silence(self, silence: SilenceParams) -> SilenceGate | None:
        return SilenceGate(silence, self.features.params.num_frames) if silence.enabled else None

    def reconfigure(self, params: PipelineParams) -> None:
        """New thresholds/keywords/stride without losing the audio already seen."""
        old = self.params
        self.params = params
        self.decider = KeywordDecider(self.model.labels, params.decision)
        if params.command != old.command or (params.command.enabled and params.decision != old.decision):
            self.gate = self._new_gate(params.command)  # the gate re-scores with the decision's thresholds
        if params.silence != old.silence:
            self.silence = self._new_silence(params.silence)

    @property
    def samples_seen(self) -> int:
        return self.features.samples_covered

    def feed(self, samples: np.ndarray) -> list[Detection]:
        """Process a block of 16 kHz mono int16 audio; returns any detections."""
        samples = np.asarray(samples, dtype=np.int16).reshape(-1)
        self._fed += len(samples)
        gate, silence = self.gate, self.silence
        per_hop_audio = gate is not None or silence is not None
        detections: list[Detection] = []
        num_frames = self.features.params.num_frames
        hop = self.features.params.frame_step
        audio = np.concatenate((self._tail, samples)) if per_hop_audio else samples
        audio_start = self.features.samples_covered  # stream position of audio[0]
        for frames_total in self.features.push(samples):
            end = self.features.samples_covered
            level = hop_level_db(audio[max(0, end - hop - audio_start): end - audio_start]) if per_hop_audio else 0.0
            due = frames_total >= num_frames and (frames_total - num_frames) % self.params.stride == 0
            if silence is not None and not silence.push_level(level):
                if due:
                    silence.skipped += 1
                    self.decider.forget()  # no stale scores from before the silence
                due = False
            decisions = self._infer() if due else []
            if gate is None:
                detections.extend(self._detection(d) for d in decisions)
                continue
            smoothed = self.decider.smoothed if due else None
            detections.extend(self._detection(d) for d in gate.push_level(level, end, decisions, smoothed))
        if per_hop_audio:
            self._tail = audio[self.features.samples_covered - audio_start:]
        return detections

    def finish(self) -> list[Detection]:
        """End of stream: evaluate the last window if the stride skipped it; in command
        mode the end of the stream counts as the silence after the last word.

        A stream shorter than one window (a 0.9 s clip) is first padded with zeros to
        1 s at its end, as the Speech Commands clips the model was trained on were."""
        window = self.features.params.window_samples
        padded = self.feed(np.zeros(window - self._fed, dtype=np.int16)) if 0 < self._fed < window else []
        return padded + self._finish()

    def _finish(self) -> list[Detection]:
        decisions, inferred = [], False
        quiet = self.silence is not None and not self.silence.active
        if self.features.ready and self._evaluated_frame != self.features.frames_total and not quiet:
            decisions, inferred = self._infer(), True
        if self.gate is not None:
            decisions = self.gate.finish(decisions, self.decider.smoothed if inferred else None)
        return [self._detection(d) for d in decisions]

    def _infer(self) -> list[Decision]:
        self._evaluated_frame = self.features.frames_total
        self.inferences += 1
        if self.inference_observer is None:
            probabilities = self.model.probabilities(self.features.window())
        else:
            started = time.perf_counter()
            probabilities = self.model.probabilities(self.features.window())
            self.inference_observer(time.perf_counter() - started)
        decision = self.decider.update(probabilities, self.features.samples_covered, self._rate)
        return [decision] if decision else []

    def _detection(self, decision: Decision) -> Detection:
        end = decision.end_sample / self._rate
        window = self.features.params.window_samples / self._rate
        return Detection(keyword=decision.keyword, score=decision.score, start=max(0.0, end - window),
                         end=end, source=self.source, model=self.model_name, time=self._clock(),
                         threshold=self.params.decision.threshold_for(decision.keyword))
