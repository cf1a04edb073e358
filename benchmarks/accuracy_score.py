"""Scoring replayed decisions: clip accuracy, recall, confusions, false accepts per hour."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kws_stream.decision import Decision
from kws_stream.features import MICRONET

from .accuracy_analysis import FileAnalysis
from .accuracy_clips import Clip
from .accuracy_replay import Candidate, replay

MISSED = "missed"
EXTRA = "extra"


def align(expected: Sequence[str], detected: Sequence[str]) -> list[tuple[str | None, str | None]]:
    """Order-aware alignment: as many matches as possible, then as few edits as possible.

    Returns pairs ``(expected, detected)``: both set (a match or a confusion),
    ``(keyword, None)`` a miss, ``(None, keyword)`` an extra detection.
    """
    n, m = len(expected), len(detected)
    # best[i][j] = (matches, -edits) aligning expected[i:] with detected[j:]
    best = [[(0, 0)] * (m + 1) for _ in range(n + 1)]
    for i in range(n, -1, -1):
        for j in range(m, -1, -1):
            if i == n and j == m:
                continue
            options = []
            if i < n and j < m:
                hit = expected[i] == detected[j]
                b = best[i + 1][j + 1]
                options.append((b[0] + hit, b[1] - (not hit)))
            if i < n:
                options.append((best[i + 1][j][0], best[i + 1][j][1] - 1))
            if j < m:
                options.append((best[i][j + 1][0], best[i][j + 1][1] - 1))
            best[i][j] = max(options)
    pairs: list[tuple[str | None, str | None]] = []
    i = j = 0
    while i < n or j < m:
        if i < n and j < m:
            hit = expected[i] == detected[j]
            b = best[i + 1][j + 1]
            if (b[0] + hit, b[1] - (not hit)) == best[i][j]:
                pairs.append((expected[i], detected[j]))
                i, j = i + 1, j + 1
                continue
        if i < n and (best[i + 1][j][0], best[i + 1][j][1] - 1) == best[i][j]:
            pairs.append((expected[i], None))
            i += 1
        else:
            pairs.append((None, detected[j]))
            j += 1
    return pairs


def rate(num: float, den: float) -> float | None:
    return num / den if den else None


@dataclass
class KeywordSetScore:
    """Scores of a set of clips that each should yield a known keyword sequence."""

    clips: int = 0
    correct: int = 0
    expected: Counter = field(default_factory=Counter)
    found: Counter = field(default_factory=Counter)
    confusions: dict[str, Counter] = field(default_factory=dict)
    groups: dict[str, list[int]] = field(default_factory=dict)  # group -> [clips, correct]
    failures: list[dict[str, Any]] = field(default_factory=list)

    def add(self, clip: Clip, decisions: Sequence[Decision]) -> None:
        detected = [d.keyword for d in decisions]
        ok = tuple(detected) == clip.expected
        self.clips += 1
        self.correct += ok
        group = self.groups.setdefault(clip.group, [0, 0])
        group[0] += 1
        group[1] += ok
        for exp, det in align(clip.expected, detected):
            row = self.confusions.setdefault(exp if exp is not None else EXTRA, Counter())
            row[det if det is not None else MISSED] += 1
            if exp is not None:
                self.expected[exp] += 1
                self.found[exp] += exp == det
        if not ok:
            self.failures.append({"clip": clip.name, "expected": list(clip.expected), "detected": [
                {"keyword": d.keyword, "score": round(d.score, 4), "end": round(MICRONET.seconds(d.end_sample), 3)}
                for d in decisions]})

    @property
    def clip_accuracy(self) -> float | None:
        return rate(self.correct, self.clips)

    @property
    def recall(self) -> float | None:
        return rate(sum(self.found.values()), sum(self.expected.values()))

    @property
    def extra(self) -> int:
        return sum(self.confusions.get(EXTRA, Counter()).values())

    def as_dict(self, details: bool = False) -> dict[str, Any]:
        out = {
            "clips": self.clips, "correct": self.correct, "clip_accuracy": self.clip_accuracy,
            "recall": self.recall, "extra_detections": self.extra,
            "per_keyword": {k: {"expected": self.expected[k], "found": self.found[k],
                                "recall": rate(self.found[k], self.expected[k])} for k in sorted(self.expected)},
            "confusions": {k: dict(sorted(v.items())) for k, v in sorted(self.confusions.items())},
            "groups": {g: {"clips": c, "correct": ok, "clip_accuracy": rate(ok, c)}
                       for g, (c, ok) in sorted(self.groups.items())},
        }
        if details:
            out["failures"] = self.failures
        return out


@dataclass
class NegativeSetScore:
    """False accepts on keyword-free audio."""

    files: int = 0
    seconds: float = 0.0
    false_accepts: Counter = field(default_factory=Counter)  # per keyword
    groups: dict[str, list[float]] = field(default_factory=dict)  # group -> [seconds, false accepts]
    events: list[dict[str, Any]] = field(default_factory=list)

    def add(self, clip: Clip, decisions: Sequence[Decision], seconds: float) -> None:
        self.files += 1
        self.seconds += seconds
        group = self.groups.setdefault(clip.group, [0.0, 0])
        group[0] += seconds
        group[1] += len(decisions)
        for d in decisions:
            self.false_accepts[d.keyword] += 1
            self.events.append({"clip": clip.name, "keyword": d.keyword, "score": round(d.score, 4),
                                "end": round(MICRONET.seconds(d.end_sample), 3)})

    @property
    def total(self) -> int:
        return sum(self.false_accepts.values())

    @property
    def per_hour(self) -> float | None:
        return rate(self.total * 3600.0, self.seconds)

    def as_dict(self, details: bool = False) -> dict[str, Any]:
        out = {
            "files": self.files, "seconds": round(self.seconds, 3), "false_accepts": self.total,
            "fa_per_hour": self.per_hour,
            "per_keyword": dict(sorted(self.false_accepts.items())),
            "groups": {g: {"seconds": round(s, 3), "false_accepts": int(n), "fa_per_hour": rate(n * 3600.0, s)}
                       for g, (s, n) in sorted(self.groups.items())},
        }
        if details:
            out["events"] = self.events
        return out


@dataclass
class Result:
    """One model x one candidate over all sets."""

    model: str
    candidate: str
    params: Mapping[str, Any]
    default: bool
    scores: dict[str, KeywordSetScore | NegativeSetScore]
    pareto: bool = False

    def accuracy(self, set_name: str) -> float | None:
        score = self.scores.get(set_name)
        return score.clip_accuracy if isinstance(score, KeywordSetScore) else None

    def recall(self, set_name: str) -> float | None:
        score = self.scores.get(set_name)
        return score.recall if isinstance(score, KeywordSetScore) else None

    @property
    def fa_per_hour(self) -> float | None:
        score = self.scores.get("negative")
        return score.per_hour if isinstance(score, NegativeSetScore) else None

    def as_dict(self, details: bool = False) -> dict[str, Any]:
        return {"model": self.model, "candidate": self.candidate, "params": dict(self.params),
                "default": self.default, "pareto": self.pareto,
                **{name: score.as_dict(details) for name, score in self.scores.items()}}


def score(model: str, candidate: Candidate, clips: Sequence[Clip],
          analyses: Mapping[Path, FileAnalysis]) -> Result:
    """Replay one candidate over every clip of every set and score it."""
    scores: dict[str, KeywordSetScore | NegativeSetScore] = {}
    for clip in clips:
        analysis = analyses[clip.path.resolve()]
        decisions = replay(analysis, candidate.stride, candidate.make_stage)
        if clip.set in ("negative", "negatives"):
            s = scores.setdefault(clip.set, NegativeSetScore())
            s.add(clip, decisions, analysis.seconds)
        else:
            scores.setdefault(clip.set, KeywordSetScore()).add(clip, decisions)
    return Result(model, candidate.name, candidate.params, candidate.default, scores)


_REPLAY_STATE: dict[str, Any] = {}


def _worker_score(task: tuple[str, int]) -> Result:
    model, index = task
    state = _REPLAY_STATE
    return score(model, state["candidates"][index], state["clips"], state["analyses"][model])


def evaluate(analyses: Mapping[str, Mapping[Path, FileAnalysis]], clips: Sequence[Clip],
             candidates: Sequence[Candidate], jobs: int = 1) -> list[Result]:
    """Every model x candidate, in that order; marks the Pareto-best candidates per model."""
    tasks = [(model, i) for model in analyses for i in range(len(candidates))]
    if jobs <= 1 or len(tasks) == 1 or "fork" not in multiprocessing.get_all_start_methods():
        results = [score(model, candidates[i], clips, analyses[model]) for model, i in tasks]
    else:
        _REPLAY_STATE.update(analyses=analyses, clips=clips, candidates=candidates)
        try:
            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
                results = list(pool.map(_worker_score, tasks, chunksize=max(1, len(tasks) // (4 * jobs))))
        finally:
            _REPLAY_STATE.clear()
    for model in analyses:
        mark_pareto([r for r in results if r.model == model])
    return results


def _objectives(r: Result) -> tuple[float, ...]:
    """Bigger is better on every axis."""
    fa = r.fa_per_hour
    return (r.accuracy("synthetic") or 0.0, r.accuracy("shared") or 0.0, -(fa if fa is not None else 0.0))


def mark_pareto(results: Sequence[Result]) -> None:
    """Flag the results no other result beats on every axis (synthetic and shared accuracy, FA/h)."""
    objectives = [_objectives(r) for r in results]
    for r, mine in zip(results, objectives):
        r.pareto = not any(all(o >= m for o, m in zip(other, mine)) and other != mine for other in objectives)


def best(results: Sequence[Result], limit: int = 5) -> list[Result]:
    """The Pareto-best results, the most accurate (synthetic set) first."""
    front = [r for r in results if r.pareto]
    return sorted(front, key=lambda r: tuple(-x for x in _objectives(r)))[:limit]
