"""The cheap half of the accuracy harness: decision stages replayed over cached analyses.

Every candidate setting is evaluated by *replaying* a decision stage over the stride-1
probabilities, picking the windows exactly as :meth:`Pipeline.feed` does (infer when
``(frames_total - 49) % stride == 0``) plus the final window at end of file as
:meth:`Pipeline.finish` does. ``tests/test_accuracy_harness.py`` checks that the replay
gives the same detections as the real :class:`~kws_stream.pipeline.Pipeline`.

The decision stage is a factory (:data:`StageFactory`): it is given the file's
:class:`FileAnalysis` (probabilities, per-hop MFCC frames, and the 16 kHz audio on
demand), so a later stage that also needs per-hop audio energy or VAD information can
be evaluated the same way; :class:`Setting` builds the stock :class:`KeywordDecider`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from kws_stream.config import DetectionConfig
from kws_stream.decision import Decision, DecisionParams, KeywordDecider
from kws_stream.features import FeatureParams

from .accuracy_analysis import FileAnalysis

SHIPPED = DetectionConfig()

class DecisionStage(Protocol):
    """A stage driven once per inference: the shape of :class:`KeywordDecider`.

    ``update`` is called once per inference the pipeline would run, in stream order;
    it may return ``None``, one :class:`Decision` or a list of them.
    """

    def update(self, probabilities: np.ndarray, end_sample: int, sample_rate: int) -> Any: ...


class HopStage(Protocol):
    """A stage driven once per 20 ms hop, as the pipeline's post-decider stages are.

    ``step`` is called after every MFCC frame (from the first, before any window is
    complete) with the stream position of the frame's end and, on hops where the
    pipeline runs the model, that window's probabilities (else ``None``); ``finish``
    is called once at end of stream with the probabilities of the last window if the
    stride skipped it (what :meth:`Pipeline.finish` evaluates), else ``None``. Both
    return a list of decisions. The hop's audio is
    ``analysis.audio()[end_sample - 320:end_sample]``; its MFCC frame is
    ``analysis.frames[(end_sample - 640) // 320]``. A stage that gates the decider
    on audio energy (command mode) fits here.
    """

    def step(self, end_sample: int, probabilities: np.ndarray | None) -> list[Decision]: ...

    def finish(self, probabilities: np.ndarray | None) -> list[Decision]: ...


StageFactory = Callable[[FileAnalysis], "DecisionStage | HopStage"]
"""Makes a fresh stage for one file; it may use anything in the analysis (per-hop MFCC
frames, ``audio()``). A stage with a ``step`` method is replayed hop by hop
(:class:`HopStage`), any other once per inference (:class:`DecisionStage`)."""


def inference_windows(windows: int, stride: int) -> np.ndarray:
    """Indices of the windows :class:`Pipeline` evaluates at ``stride``.

    Window ``i`` is evaluated by ``feed`` when ``(frames_total - 49) % stride == 0``,
    i.e. ``i % stride == 0``; ``finish`` adds the last window if it was skipped.
    """
    if stride < 1:
        raise ValueError("stride must be >= 1")
    idx = np.arange(0, windows, stride)
    if windows and idx[-1] != windows - 1:
        idx = np.append(idx, windows - 1)
    return idx


def _as_list(result: Any) -> list[Decision]:
    if result is None:
        return []
    return [result] if isinstance(result, Decision) else list(result)


def replay(analysis: FileAnalysis, stride: int, make_stage: StageFactory) -> list[Decision]:
    """The decisions a pipeline with this stride and decision stage makes on the file."""
    stage = make_stage(analysis)
    if hasattr(stage, "step"):
        return _replay_hops(analysis, stride, stage)
    out: list[Decision] = []
    probabilities, ends, rate = analysis.probabilities, analysis.end_samples, analysis.sample_rate
    for i in inference_windows(analysis.windows, stride):
        out += _as_list(stage.update(probabilities[i], int(ends[i]), rate))
    return out


def _replay_hops(analysis: FileAnalysis, stride: int, stage: HopStage) -> list[Decision]:
    p = FeatureParams()
    first = p.num_frames - 1  # frame index (0-based) that completes window 0
    out: list[Decision] = []
    for k in range(len(analysis.frames)):
        i = k - first
        due = i >= 0 and i % stride == 0
        out += _as_list(stage.step(k * p.frame_step + p.frame_length,
                                   analysis.probabilities[i] if due else None))
    last = analysis.windows - 1
    out += _as_list(stage.finish(analysis.probabilities[last] if last >= 0 and last % stride else None))
    return out


@dataclass(frozen=True)
class Setting:
    """One stock configuration: stride and :class:`DecisionParams` fields; the defaults
    are the shipped ones (`[detection]`), so the `default` mark follows them."""

    stride: int = SHIPPED.stride
    smoothing: int = SHIPPED.smoothing
    threshold: float = SHIPPED.threshold
    refractory: float = SHIPPED.refractory

    @property
    def label(self) -> str:
        return f"stride {self.stride}, smoothing {self.smoothing}, threshold {self.threshold:g}, refractory {self.refractory:g}"

    def decision_params(self) -> DecisionParams:
        return DecisionParams(smoothing=self.smoothing, threshold=self.threshold, refractory=self.refractory)

    def factory(self) -> StageFactory:
        params = self.decision_params()
        return lambda analysis: KeywordDecider(analysis.labels, params)

    def as_dict(self) -> dict[str, Any]:
        return {"stride": self.stride, "smoothing": self.smoothing, "threshold": self.threshold,
                "refractory": self.refractory}


@dataclass(frozen=True)
class Candidate:
    """A named decision stage to evaluate: any factory, at a stride."""

    name: str
    stride: int
    make_stage: StageFactory
    params: Mapping[str, Any] = field(default_factory=dict)
    default: bool = False

    @classmethod
    def from_setting(cls, setting: Setting, default: bool = False) -> Candidate:
        return cls(setting.label, setting.stride, setting.factory(), setting.as_dict(), default)


def default_setting() -> Setting:
    """The shipped defaults."""
    return Setting()


GRIDS: dict[str, dict[str, tuple[Any, ...]]] = {
    "default": {"stride": (1, 2, 4), "smoothing": (1, 2, 4, 6), "threshold": (0.6, 0.7, 0.8, 0.9),
                "refractory": (1.0,)},
    "full": {"stride": (1, 2, 4, 8), "smoothing": (1, 2, 3, 4, 6, 8),
             "threshold": (0.5, 0.6, 0.7, 0.8, 0.9, 0.95), "refractory": (0.5, 1.0, 1.5)},
}


def grid(name: str = "default") -> list[Candidate]:
    """The candidate settings of a named grid; the shipped default is always included."""
    g = GRIDS[name]
    settings = [Setting(*combo) for combo in itertools.product(g["stride"], g["smoothing"], g["threshold"],
                                                               g["refractory"])]
    default = default_setting()
    if default not in settings:
        settings.insert(0, default)
    return [Candidate.from_setting(s, default=s == default) for s in settings]
