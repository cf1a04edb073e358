"""The spotting pipeline for one audio stream: features -> model -> decision.

A plain object driven synchronously: `feed()` 16 kHz int16 blocks in, detections
out. `kws-stream detect` drives it from a file; the daemon drives the very same
object from its capture thread's ring buffer.

`Spotter` is the part after the front end: hop levels in, decisions out, running the
model (through a `score(hop)` callback) on the windows its mode's scheduler (`schedule`)
wants. The benchmarks drive the same `Spotter` with cached model outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .backend import KeywordModel
from .command import CommandGate, CommandParams
from .decision import Decision, DecisionParams, KeywordDecider
from .enrolled import WordJudge, WordScore, WordSet, any_allowed, model_decision
from .events import Detection
from .features import FeatureParams, FeatureWindow, MfccExtractor
from .judge import Judge, JudgeVerdict
from .params import FLAG, Checked, Rule, integer, setting
from .rules import AddedRule
from .schedule import EagerScheduler, EventScheduler, PlainScheduler, Scheduler, Windows
from .silence import SilenceGate, SilenceParams
from .verdicts import Burst, Reject, RuleId


def _instance(cls: type) -> Rule:
    return Rule(f"a {cls.__name__}", lambda v: isinstance(v, cls))


@dataclass(frozen=True)
class PipelineParams(Checked):
    """Everything the pipeline's behaviour depends on; a bad value is a ConfigError."""

    section = "pipeline"

    stride: int = setting(1, integer(1, 25, note="hops of 20 ms"))  # run the model every `stride` hops
    decision: DecisionParams = setting(DecisionParams(), _instance(DecisionParams))
    command: CommandParams = setting(CommandParams(), _instance(CommandParams))  # enabled=False: plain spotting
    silence: SilenceParams = setting(SilenceParams(), _instance(SilenceParams))  # plain mode: skip inference while quiet
    eager_inference: bool = setting(False, FLAG)
    """Command mode only: run the model at every hop as plain mode does, instead of only
    around bursts that can be commands. Same rules, 10-75x the CPU: for benchmarks and for
    checking that the event-driven path reports the same commands."""
    words: WordSet = setting(WordSet(), _instance(WordSet))
    """Enrolled words, judged on the command-shaped bursts beside the keywords (`enrolled`);
    `decision`'s allow-list and thresholds may name them."""

    @property
    def mode(self) -> str:
        """"plain", "eager" (command mode, the model at every hop) or "event" (command mode)."""
        if not self.command.enabled:
            return "plain"
        return "eager" if self.eager_inference else "event"


class Spotter:
    """Hop levels in, keyword decisions out; one per stream, not thread-safe.

    `hop(index, level_db)` takes hop `index` (0-based from the stream's start; the window
    ending with it ends at `FeatureParams.frame_end(index)`) and returns the decisions made
    now. `score(index)` must return the model's probabilities for the window ending with hop
    `index`, for any index between `oldest_window()` and the newest hop. `rules` are added
    to command mode's (an experiment's: see `rules.AddedRule`).
    """

    def __init__(self, labels: tuple[str, ...], params: PipelineParams, score: Callable[[int], np.ndarray],
                 features: FeatureParams = FeatureParams(), oldest_window: Callable[[], int] = lambda: 0,
                 rules: Sequence[AddedRule] = ()) -> None:
        self.labels = labels
        self.params = params
        self.decider = KeywordDecider(labels, params.decision)
        self.windows = Windows(self.decider, params, score, features, oldest_window)
        self._rules = tuple(rules)
        self.rejections: list[tuple[Decision, Reject]] = []
        """Candidates command mode rejected and the rule that did, for the caller to take
        (a list, not a callback: no reference cycle keeps a finished stream alive)."""
        self.scheduler: Scheduler = self._scheduler(params)

    @property
    def gate(self) -> CommandGate | None:
        return self.scheduler.gate

    @property
    def silence(self) -> SilenceGate | None:
        return self.scheduler.silence

    @property
    def inferences(self) -> int:
        """Model runs so far."""
        return self.windows.inferences

    def _new_gate(self, params: PipelineParams) -> CommandGate:
        gate = CommandGate(params.command, self.labels, params.decision, self.windows.geometry,
                           first_hop=self.windows.heard, rules=self._rules, stride=params.stride)  # a reload mid-stream starts now
        rejections = self.rejections
        gate.on_reject = lambda decision, rule: rejections.append((decision, rule))
        return gate

    def _scheduler(self, params: PipelineParams) -> Scheduler:
        if params.mode == "plain":
            return PlainScheduler(self.windows, params)
        if params.mode == "eager":
            return EagerScheduler(self.windows, self._new_gate(params))
        return EventScheduler(self.windows, self._new_gate(params))

    def reconfigure(self, params: PipelineParams) -> None:
        """New thresholds/keywords/stride without losing the audio already seen."""
        old = self.params
        self.params = self.windows.params = params
        self.decider.retune(params.decision)  # a word being heard keeps its smoothing
        scheduler = self.scheduler
        if params.mode != old.mode or (params.mode == "plain" and (params.silence, params.command, params.eager_inference) !=
                                       (old.silence, old.command, old.eager_inference)):
            self.scheduler = self._scheduler(params)
        elif isinstance(scheduler, (EagerScheduler, EventScheduler)):
            if params.command != old.command:
                scheduler.gate = self._new_gate(params)  # the scheduler keeps the windows it wants
            elif (params.decision, params.stride) != (old.decision, old.stride):
                scheduler.gate.retune(params.decision, params.stride)  # a word being judged stays judged (soak: SIGHUP mid-word)

    def hop(self, index: int, level_db: float) -> list[Decision]:
        self.windows.heard = index + 1
        return self.scheduler.hop(index, level_db)

    def finish(self) -> list[Decision]:
        """End of stream: evaluate the last window if the stride skipped it; in command
        mode the end of the stream counts as the silence after the last word."""
        return self.scheduler.finish()


class Pipeline:
    """Streaming keyword spotting over one stream; not thread-safe, one per stream.

    With command mode on (the default) a keyword is reported only when spoken as a
    command, once the short silence after it has been heard (so `feed` may return it a
    few blocks later, and `finish` flushes what the end of the stream completes). A
    detection's `start`/`end` stay those of the 1 s window that fired, in both modes;
    an enrolled word's are those of the burst's audio that was scored.
    """

    def __init__(self, model: KeywordModel, model_name: str, source: str,
                 params: PipelineParams = PipelineParams(),
                 clock: Callable[[], str | None] = lambda: None, judge: Judge | None = None) -> None:
        self.model = model
        self.judge = judge
        """Command mode's second judge (`judge.load_judge`), consulted for every candidate the
        rules accept; None: the rules alone decide."""
        self.model_name = model_name
        self.source = source
        self._clock = clock
        self.features = FeatureWindow(MfccExtractor())
        self._rate = self.features.params.sample_rate
        self._params = params
        self.spotter = Spotter(model.labels, _for_model(params), _scorer(model, self.features), self.features.params,
                               self.features.oldest_window)
        self.words = self._new_word_judge(params) if any_allowed(params.words, params.decision) else None
        """Judges the enrolled words; None when none are enrolled or allowed (no work at all for them)."""
        self.rejection_observer: Callable[[Detection, Reject], None] | None = None
        """Called with each candidate command mode rejects and the rule that did (`--explain`)."""
        self.word_observer: Callable[[Detection, bool], None] | None = None
        """Called with each enrolled word's score on each burst, and whether it was reported (`--explain`)."""
        self._reported_end = -(1 << 62)  # the end of the window of the last keyword reported
        self._waiting: list[Decision] = []  # accepted by the rules, waiting for the end of the judge's span
        self.judge_observer: Callable[[Detection, JudgeVerdict], None] | None = None
        """Called with each candidate the second judge judged and its verdict (`--explain`)."""

    @property
    def params(self) -> PipelineParams:
        return self._params

    @property
    def inferences(self) -> int:
        return self.spotter.inferences

    @property
    def silence(self) -> SilenceGate | None:
        return self.spotter.silence

    @property
    def inference_observer(self) -> Callable[[float], None] | None:
        """Called with each model run's duration in seconds (metrics)."""
        return self.spotter.windows.inference_observer

    @inference_observer.setter
    def inference_observer(self, observer: Callable[[float], None] | None) -> None:
        self.spotter.windows.inference_observer = observer

    def reconfigure(self, params: PipelineParams) -> None:
        """New thresholds/keywords/stride/words without losing the audio already seen."""
        old, self._params = self._params, params
        self.spotter.reconfigure(_for_model(params))
        if not any_allowed(params.words, params.decision):
            self.words = None
        elif self.words is None or params.command != old.command:
            self.words = self._new_word_judge(params)
        elif (params.words, params.decision) != (old.words, old.decision):
            self.words.retune(params.words, params.decision)

    def _new_word_judge(self, params: PipelineParams) -> WordJudge:
        return WordJudge(params.words, params.decision, params.command, self.features.audio, self.features.params,
                         first_hop=self.features.frames_total)  # a reload mid-stream starts now

    @property
    def samples_seen(self) -> int:
        return self.features.samples_covered

    def _report_rejections(self) -> None:
        rejections = self.spotter.rejections
        if self.rejection_observer is not None:
            for decision, rule in rejections:
                self.rejection_observer(self._detection(decision), rule)
        rejections.clear()

    def feed(self, samples: np.ndarray) -> list[Detection]:
        """Process a block of 16 kHz mono int16 audio; returns any detections."""
        decisions: list[Decision] = []
        words: list[WordScore] = []
        for hop in self.features.push(samples):
            decisions.extend(self._judged(self.spotter.hop(hop.number, hop.level_db)))
            if self.spotter.rejections:
                self._report_rejections()
            if self.words is not None:
                words.extend(self.words.hop(hop.level_db, hop.end_sample))
                if self.words.scores:
                    self._report_scores()
        return self._detections(decisions, words)

    def _judged(self, decisions: list[Decision], end: bool = False) -> list[Decision]:
        """The decisions the second judge agrees with, once the audio it hears is in (`end`: the
        stream ended, zeros after it). Decisions wait, in order, for the end of their span."""
        judge = self.judge
        self._waiting.extend(decisions)
        kept: list[Decision] = []
        if judge is None or not self.params.command.enabled:  # (a reload may have just turned it off)
            kept, self._waiting = self._waiting, kept
            return kept
        while self._waiting and (end or judge.span(self._waiting[0].end_sample)[1] <= self.features.samples_pushed):
            d = self._waiting.pop(0)
            if d.keyword not in judge.keywords or self._verdict(judge, d):  # a user's own model's word: not judged
                kept.append(d)
                self._reported_end = d.end_sample
        return kept

    def _verdict(self, judge: Judge, d: Decision) -> bool:
        start, end = judge.span(d.end_sample)
        # a row's next command: the judge hears it after the word before it (zeros), not that word
        quiet = min(max(start, self._reported_end), end)
        audio = np.concatenate([np.zeros(quiet - start, np.int16), self._audio(quiet, end)])
        verdict = judge.judge(audio, d.keyword, d.score)
        if self.judge_observer is not None:
            self.judge_observer(self._detection(d), verdict)
        if not verdict.accepted and self.rejection_observer is not None:
            hop = end // self.features.params.frame_step
            self.rejection_observer(self._detection(d), Reject(
                RuleId.JUDGE, Burst(hop, hop, hop), "speech embedding score {measured:.2f} < {limit:.2f}",
                verdict.score, verdict.threshold))
        return verdict.accepted

    def _audio(self, start: int, end: int) -> np.ndarray:
        """Stream samples [start, end), zeros before the stream's start and after its end."""
        kept = self.features.audio(max(start, 0), end)
        got = np.zeros(0, np.int16) if kept is None else kept
        before = min(end, 0) - start if start < 0 else 0
        return np.concatenate([np.zeros(before, np.int16), got, np.zeros(end - start - before - len(got), np.int16)])

    def finish(self) -> list[Detection]:
        """End of stream (see `Spotter.finish`).

        A stream shorter than one window (a 0.9 s clip) is first padded with zeros to
        1 s at its end, as the Speech Commands clips the model was trained on were."""
        window = self.features.params.window_samples
        pushed = self.features.samples_pushed
        padded = self.feed(np.zeros(window - pushed, dtype=np.int16)) if 0 < pushed < window else []
        decisions = self._judged(self.spotter.finish(), end=True)
        self._report_rejections()
        words = self.words.finish(self.features.samples_pushed) if self.words is not None else []
        if self.words is not None and self.words.scores:
            self._report_scores()
        return padded + self._detections(decisions, words)

    def _report_scores(self) -> None:
        assert self.words is not None
        if self.word_observer is not None:
            for s in self.words.scores:
                self.word_observer(self._word_detection(s), s.reported)
        self.words.scores.clear()

    def _detections(self, decisions: list[Decision], words: list[WordScore]) -> list[Detection]:
        found = [self._detection(d) for d in decisions]
        if words:
            found = sorted(found + [self._word_detection(w) for w in words], key=lambda d: d.end)
        return found

    def _word_detection(self, s: WordScore) -> Detection:
        return Detection(keyword=s.word, score=s.score, start=s.start_sample / self._rate, end=s.end_sample / self._rate,
                         source=self.source, model=self.model_name, time=self._clock(), threshold=round(s.threshold, 4))

    def _detection(self, decision: Decision) -> Detection:
        end = decision.end_sample / self._rate
        window = self.features.params.geometry.window_seconds
        return Detection(keyword=decision.keyword, score=decision.score, start=max(0.0, end - window),
                         end=end, source=self.source, model=self.model_name, time=self._clock(),
                         threshold=self.params.decision.threshold_for(decision.keyword))


def _for_model(params: PipelineParams) -> PipelineParams:
    """`params` as the model's spotter takes them: without the enrolled names."""
    decision = model_decision(params.decision, params.words)
    return params if decision is params.decision else replace(params, decision=decision)


def _scorer(model: KeywordModel, features: FeatureWindow) -> Callable[[int], np.ndarray]:
    """The model's probabilities for the window ending with hop `index` (a closure over the
    model and the features, not the Pipeline: no reference cycle)."""
    def score(index: int) -> np.ndarray:
        return model.probabilities(features.window(index))
    return score
