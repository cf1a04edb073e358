"""Accuracy harness: clip accuracy, recall, confusions and false accepts per hour.

Three sets:

* ``shared``: the real clips in ``$KWS_SHARED/audio/keywords``; each file's expected
  keywords are the leading keyword words of its name (``right_left_up.wav`` -> right,
  left, up; ``yes_1000ms.wav`` -> yes).
* ``synthetic``: the synthetic keyword set of :mod:`benchmarks.corpus` (1.5 s clips,
  exactly one keyword each).
* ``negative``: the keyword-free stream, i.e. the synthetic prose files plus every
  ``$KWS_SHARED/audio/negatives/*.wav`` (LibriSpeech sentences, noise, silence,
  "marvin"). Every detection there is a false accept.

How it stays fast: MFCC and inference are the expensive part, the decision stage is
cheap. So each (model, file) is analysed once, at stride 1, with the pipeline's own
:class:`~kws_stream.features.FeatureWindow` and :class:`~kws_stream.backend.KeywordModel`
(the front end is not reimplemented), and the per-window probabilities are kept in
memory and in an ``.npz`` cache keyed by the model's SHA-1, the file (path, size,
mtime), the front-end source and the runtime. Every candidate decision setting is then
evaluated by *replaying* a decision stage over those probabilities, picking the windows
exactly as :meth:`Pipeline.feed` does (infer when ``(frames_total - 49) % stride == 0``)
plus the final window at end of file as :meth:`Pipeline.finish` does.
``tests/test_accuracy_harness.py`` checks that the replay gives the same detections as
the real :class:`~kws_stream.pipeline.Pipeline`.

The decision stage is a factory (:data:`StageFactory`): it is given the file's
:class:`FileAnalysis` (probabilities, per-hop MFCC frames, and the 16 kHz audio on
demand), so a later stage that also needs per-hop audio energy or VAD information can
be evaluated the same way; :class:`Setting` builds the stock :class:`KeywordDecider`.

Usage::

    python -m benchmarks.accuracy [--corpus DIR] [--minutes 30] \\
        [--models micronet-l,micronet-m] [--grid default|full] [--json OUT] [--markdown OUT]
"""

from __future__ import annotations

import os

# Batch work in worker processes: keep BLAS from spinning up its own thread pools.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import csv
import datetime
import hashlib
import importlib.metadata
import itertools
import json
import multiprocessing
import platform
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kws_stream.backend import KeywordModel
from kws_stream.decision import NON_KEYWORDS, Decision, DecisionParams, KeywordDecider
from kws_stream.features import FeatureParams, FeatureWindow, MfccExtractor
from kws_stream.sources import WavFileSource

CACHE_VERSION = 1
DEFAULT_MODELS = ("micronet-l", "micronet-m")
SETS = ("shared", "synthetic", "negative")
MISSED = "missed"
EXTRA = "extra"


def shared_dir() -> Path:
    """The shared data directory: ``$KWS_SHARED`` or ``../shared`` next to the checkout."""
    env = os.environ.get("KWS_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


# --------------------------------------------------------------------------- clips


@dataclass(frozen=True)
class Clip:
    """One file to score. ``expected`` is empty for the keyword-free set."""

    path: Path
    set: str  # "shared", "synthetic" or "negative"
    expected: tuple[str, ...] = ()
    group: str = ""  # a breakdown key: the voice (synthetic), "prose" or "shared" (negative)

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


def expected_from_name(path: Path, keywords: Iterable[str]) -> tuple[str, ...]:
    """The leading keyword words of a file name: ``right_left_up`` -> right, left, up."""
    known = set(keywords)
    out = []
    for word in path.stem.lower().split("_"):
        if word not in known:
            break
        out.append(word)
    return tuple(out)


def shared_keyword_clips(shared: Path, keywords: Iterable[str]) -> list[Clip]:
    clips = []
    for path in sorted((shared / "audio" / "keywords").glob("*.wav")):
        expected = expected_from_name(path, keywords)
        if not expected:
            raise ValueError(f"{path}: the file name starts with no keyword; cannot tell what it should yield")
        clips.append(Clip(path, "shared", expected, "shared"))
    return clips


def folder_label(path: Path, keywords: Iterable[str]) -> tuple[str, ...]:
    """A user's keyword clip: the leading keyword words of its name (`stop_017.wav` ->
    stop), else its folder's name if that is a keyword (`yes/take3.wav` -> yes)."""
    expected = expected_from_name(path, keywords)
    if not expected and path.parent.name.lower() in set(keywords):
        expected = (path.parent.name.lower(),)
    return expected


def folder_clips(folder: Path, set_name: str, keywords: Iterable[str]) -> list[Clip]:
    """Every WAV under `folder` (recursively): `--negatives` (keyword-free, every detection
    is a false accept) or `--positives` (labelled by :func:`folder_label`)."""
    paths = sorted(Path(folder).rglob("*.wav"))
    if not paths:
        raise ValueError(f"{folder}: no .wav files in it")
    if set_name == "negatives":
        return [Clip(p, "negatives", (), "user") for p in paths]
    clips = []
    for path in paths:
        expected = folder_label(path, keywords)
        if not expected:
            raise ValueError(f"{path}: no keyword in its name or folder; name it like stop_1.wav or put it in stop/")
        clips.append(Clip(path, "positives", expected, "user"))
    return clips


def shared_negative_clips(shared: Path) -> list[Clip]:
    return [Clip(p, "negative", (), "shared") for p in sorted((shared / "audio" / "negatives").glob("*.wav"))]


def synthetic_keyword_clips(corpus: Path) -> list[Clip]:
    """The corpus keyword set (via ``keywords.csv``), grouped by voice."""
    from benchmarks.corpus import load_keyword_set

    voices: dict[str, str] = {}
    with open(Path(corpus) / "keywords.csv", newline="") as f:
        for row in csv.DictReader(f):
            voices[row["path"]] = row.get("voice", "")
    clips = []
    for path, keyword in load_keyword_set(Path(corpus)):
        rel = path.relative_to(corpus).as_posix()
        clips.append(Clip(path, "synthetic", (keyword,), voices.get(rel, "")))
    return clips


def prose_clips(corpus: Path) -> list[Clip]:
    return [Clip(p, "negative", (), "prose") for p in sorted((Path(corpus) / "prose").glob("prose_*.wav"))]


# --------------------------------------------------------------------------- models


@dataclass
class LoadedModel:
    """A resolved, verified, loaded model."""

    name: str
    path: Path
    sha1: str
    labels: tuple[str, ...]
    model: KeywordModel
    threads: int = 1

    @property
    def keywords(self) -> tuple[str, ...]:
        return tuple(label for label in self.labels if label not in NON_KEYWORDS)


def load_model(name: str, model_dir: Path | None = None, source: str | None = None,
               threads: int = 1) -> LoadedModel:
    """Resolve (installing from ``source`` if missing) and load a model by name or path."""
    from kws_stream.models import default_model_dir, load_manifest, resolve, sha1_of

    if source is None and (shared_dir() / "models").is_dir():
        source = str(shared_dir() / "models")
    spec, path = resolve(name, model_dir or default_model_dir(), load_manifest(), source, progress=False)
    return LoadedModel(spec.name, path, spec.sha1 or sha1_of(path), spec.labels,
                       KeywordModel(path, spec.labels, num_threads=threads), threads)


def runtime_id(model: KeywordModel) -> str:
    try:
        return f"{model.runtime} {importlib.metadata.version(model.runtime)}"
    except importlib.metadata.PackageNotFoundError:
        return model.runtime


# --------------------------------------------------------------------------- analysis


@dataclass
class FileAnalysis:
    """One model's view of one file, at stride 1.

    Window ``i`` is the model input after ``frames_total = 49 + i`` frames (the one
    :class:`Pipeline` evaluates at that point); it ends at ``end_samples[i]``.
    ``frames`` holds every hop's MFCC frame (row ``k`` = frame ``k + 1``, ending at
    sample ``k * 320 + 640``); :meth:`audio` gives the 16 kHz int16 audio the pipeline saw.
    """

    path: Path
    model: str
    labels: tuple[str, ...]
    probabilities: np.ndarray  # (windows, labels) float32
    end_samples: np.ndarray  # (windows,) int64
    frames: np.ndarray  # (hops, num_mfcc) float64
    num_samples: int
    sample_rate: int = FeatureParams().sample_rate

    @property
    def windows(self) -> int:
        return len(self.probabilities)

    @property
    def seconds(self) -> float:
        return self.num_samples / self.sample_rate

    def audio(self) -> np.ndarray:
        """The file as the pipeline receives it: 16 kHz mono int16 (re-read, not cached)."""
        blocks = list(WavFileSource(self.path).blocks())
        return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int16)


def analyse_file(path: Path, models: Mapping[str, KeywordModel]) -> dict[str, dict[str, Any]]:
    """Stride-1 probabilities of every window of ``path`` for each model.

    Runs the pipeline's own source, FeatureWindow and KeywordModel: the file is fed
    block by block exactly as ``kws-stream detect`` feeds it, and every window the
    pipeline could evaluate is evaluated. MFCC is computed once for all models.
    """
    source = WavFileSource(Path(path))
    features = FeatureWindow(MfccExtractor())
    num_frames = features.params.num_frames
    probabilities: dict[str, list[np.ndarray]] = {name: [] for name in models}
    ends: list[int] = []
    frames: list[np.ndarray] = []
    samples = 0
    for block in source.blocks():
        samples += len(block)
        for hop in features.push(block):
            frames.append(features.frame(hop.number).copy())
            if hop.number + 1 >= num_frames:
                window = features.window(hop.number)
                ends.append(hop.end_sample)
                for name, model in models.items():
                    probabilities[name].append(model.probabilities(window))
    n_labels = {name: len(model.labels) for name, model in models.items()}
    common = {
        "end_samples": np.asarray(ends, dtype=np.int64),
        "frames": np.asarray(frames, dtype=np.float64).reshape(len(frames), features.params.num_mfcc),
        "num_samples": samples,
    }
    return {name: {**common, "probabilities": np.asarray(p, dtype=np.float32).reshape(len(p), n_labels[name])}
            for name, p in probabilities.items()}


def _front_end_fingerprint() -> str:
    """Changes whenever the code that turns a file into probabilities changes."""
    import kws_stream.backend
    import kws_stream.features
    import kws_stream.sources

    digest = hashlib.sha1(str(CACHE_VERSION).encode())
    for module in (kws_stream.features, kws_stream.sources, kws_stream.backend):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


_WORKER_MODELS: dict[str, KeywordModel] = {}


def _init_worker(entries: list[tuple[str, str, tuple[str, ...], int]]) -> None:
    for name, path, labels, threads in entries:
        _WORKER_MODELS[name] = KeywordModel(Path(path), labels, num_threads=threads)


def _worker_analyse(job: tuple[str, tuple[str, ...]]) -> dict[str, dict[str, Any]]:
    path, names = job
    return analyse_file(Path(path), {n: _WORKER_MODELS[n] for n in names})


class Analyzer:
    """Per-(model, file) stride-1 analyses, in memory and optionally in an npz cache."""

    def __init__(self, models: Sequence[LoadedModel], cache_dir: Path | None = None, jobs: int = 1) -> None:
        self.models = {m.name: m for m in models}
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.jobs = max(1, jobs)
        self._memory: dict[tuple[str, Path], FileAnalysis] = {}
        self._fingerprint = _front_end_fingerprint()
        self.computed = 0  # (model, file) pairs computed in this process (not from a cache)
        self.loaded = 0  # pairs read from the disk cache

    def _key(self, model: LoadedModel, path: Path) -> str:
        st = path.stat()
        parts = [model.sha1, str(path), st.st_size, st.st_mtime_ns, self._fingerprint, runtime_id(model.model)]
        return hashlib.sha1(json.dumps(parts).encode()).hexdigest()

    def _cache_file(self, model: LoadedModel, path: Path) -> Path | None:
        return self.cache_dir / f"{model.name}-{self._key(model, path)[:24]}.npz" if self.cache_dir else None

    def _load(self, model: LoadedModel, path: Path) -> FileAnalysis | None:
        cached = self._cache_file(model, path)
        if cached is None or not cached.is_file():
            return None
        try:
            with np.load(cached) as data:
                fields_ = {k: data[k] for k in ("probabilities", "end_samples", "frames")}
                num_samples = int(data["num_samples"])
        except (OSError, KeyError, ValueError):
            return None
        self.loaded += 1
        return FileAnalysis(path, model.name, model.labels, num_samples=num_samples, **fields_)

    def _store(self, model: LoadedModel, path: Path, result: Mapping[str, Any]) -> FileAnalysis:
        analysis = FileAnalysis(path, model.name, model.labels, result["probabilities"], result["end_samples"],
                                result["frames"], int(result["num_samples"]))
        cached = self._cache_file(model, path)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".tmp-", suffix=".npz")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, probabilities=analysis.probabilities, end_samples=analysis.end_samples,
                         frames=analysis.frames, num_samples=np.int64(analysis.num_samples))
            os.replace(tmp, cached)
        return analysis

    def analyse(self, paths: Iterable[Path], progress: Callable[[str], None] | None = None
                ) -> dict[str, dict[Path, FileAnalysis]]:
        """Analyses of every path for every model: {model: {path: FileAnalysis}}."""
        paths = list(dict.fromkeys(Path(p).resolve() for p in paths))
        todo: dict[Path, list[str]] = {}
        for path in paths:
            for name, model in self.models.items():
                if (name, path) in self._memory:
                    continue
                hit = self._load(model, path)
                if hit is not None:
                    self._memory[(name, path)] = hit
                else:
                    todo.setdefault(path, []).append(name)
        if todo:
            if progress:
                progress(f"analysing {len(todo)} file(s) with {', '.join(self.models)} "
                         f"({self.loaded} cached analyses reused)")
            jobs = [(str(p), tuple(names)) for p, names in todo.items()]
            for (path, names), result in zip(todo.items(), self._run(jobs)):
                for name in names:
                    self._memory[(name, path)] = self._store(self.models[name], path, result[name])
                    self.computed += 1
        return {name: {p: self._memory[(name, p)] for p in paths} for name in self.models}

    def _run(self, jobs: list[tuple[str, tuple[str, ...]]]) -> Iterable[dict[str, dict[str, Any]]]:
        if self.jobs == 1 or len(jobs) == 1 or "fork" not in multiprocessing.get_all_start_methods():
            for path, names in jobs:
                yield analyse_file(Path(path), {n: self.models[n].model for n in names})
            return
        entries = [(m.name, str(m.path), m.labels, m.threads) for m in self.models.values()]
        # Longest files first so the pool does not end on one long file.
        order = sorted(range(len(jobs)), key=lambda i: -Path(jobs[i][0]).stat().st_size)
        results: list[Any] = [None] * len(jobs)
        with ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("fork"),
                                 initializer=_init_worker, initargs=(entries,)) as pool:
            for i, result in zip(order, pool.map(_worker_analyse, [jobs[i] for i in order], chunksize=4)):
                results[i] = result
        yield from results


# --------------------------------------------------------------------------- replay


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
    """One stock configuration: stride and :class:`DecisionParams` fields."""

    stride: int = 1
    smoothing: int = 4
    threshold: float = 0.7
    refractory: float = 1.0

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
    """The shipped defaults (read from the config module, so the mark follows them)."""
    from kws_stream.config import DetectionConfig

    d = DetectionConfig()
    return Setting(d.stride, d.smoothing, d.threshold, d.refractory)


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


# --------------------------------------------------------------------------- scoring


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


def _rate(num: float, den: float) -> float | None:
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
                {"keyword": d.keyword, "score": round(d.score, 4), "end": round(d.end_sample / 16000, 3)}
                for d in decisions]})

    @property
    def clip_accuracy(self) -> float | None:
        return _rate(self.correct, self.clips)

    @property
    def recall(self) -> float | None:
        return _rate(sum(self.found.values()), sum(self.expected.values()))

    @property
    def extra(self) -> int:
        return sum(self.confusions.get(EXTRA, Counter()).values())

    def as_dict(self, details: bool = False) -> dict[str, Any]:
        out = {
            "clips": self.clips, "correct": self.correct, "clip_accuracy": self.clip_accuracy,
            "recall": self.recall, "extra_detections": self.extra,
            "per_keyword": {k: {"expected": self.expected[k], "found": self.found[k],
                                "recall": _rate(self.found[k], self.expected[k])} for k in sorted(self.expected)},
            "confusions": {k: dict(sorted(v.items())) for k, v in sorted(self.confusions.items())},
            "groups": {g: {"clips": c, "correct": ok, "clip_accuracy": _rate(ok, c)}
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
                                "end": round(d.end_sample / 16000, 3)})

    @property
    def total(self) -> int:
        return sum(self.false_accepts.values())

    @property
    def per_hour(self) -> float | None:
        return _rate(self.total * 3600.0, self.seconds)

    def as_dict(self, details: bool = False) -> dict[str, Any]:
        out = {
            "files": self.files, "seconds": round(self.seconds, 3), "false_accepts": self.total,
            "fa_per_hour": self.per_hour,
            "per_keyword": dict(sorted(self.false_accepts.items())),
            "groups": {g: {"seconds": round(s, 3), "false_accepts": int(n), "fa_per_hour": _rate(n * 3600.0, s)}
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


# --------------------------------------------------------------------------- reports


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _fa(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def table_rows(results: Sequence[Result]) -> tuple[list[str], list[list[str]]]:
    header = ["model", "stride", "smooth", "thresh", "refr", "shared acc", "synth acc", "synth recall",
              "FA", "FA/h", ""]
    mine = any("positives" in r.scores for r in results), any("negatives" in r.scores for r in results)
    if mine[0]:
        header[-1:-1] = ["your acc", "your recall"]
    if mine[1]:
        header[-1:-1] = ["your FA", "your FA/h"]
    rows = []
    for r in results:
        neg = r.scores.get("negative")
        p = r.params
        mark = " ".join(m for m, on in (("default", r.default), ("pareto", r.pareto)) if on)
        rows.append([r.model, str(p.get("stride", "")), str(p.get("smoothing", "")),
                     f"{p['threshold']:g}" if "threshold" in p else "", f"{p['refractory']:g}" if "refractory" in p else "",
                     _pct(r.accuracy("shared")), _pct(r.accuracy("synthetic")), _pct(r.recall("synthetic")),
                     str(neg.total) if isinstance(neg, NegativeSetScore) else "-", _fa(r.fa_per_hour), mark])
        if mine[0]:
            rows[-1][-1:-1] = [_pct(r.accuracy("positives")), _pct(r.recall("positives"))]
        if mine[1]:
            yours = r.scores.get("negatives")
            rows[-1][-1:-1] = ([str(yours.total), _fa(yours.per_hour)] if isinstance(yours, NegativeSetScore)
                               else ["-", "-"])
    return header, rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    left = [i == 0 or not h for i, h in enumerate(header)]  # names and the unlabelled mark column
    line = lambda cells: "  ".join(c.ljust(w) if lft else c.rjust(w)  # noqa: E731
                                   for c, w, lft in zip(cells, widths, left)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def keyword_rows(results: Sequence[Result], keywords: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Per-keyword recall (shared, synthetic) and false accepts per hour, one column group per result."""
    header = ["keyword"]
    for r in results:
        header += [f"{r.model} shared", f"{r.model} synth", f"{r.model} FA/h"]
    rows = []
    for k in keywords:
        row = [k]
        for r in results:
            for set_name in ("shared", "synthetic"):
                s = r.scores.get(set_name)
                if isinstance(s, KeywordSetScore) and s.expected[k]:
                    row.append(f"{s.found[k]}/{s.expected[k]}")
                else:
                    row.append("-")
            neg = r.scores.get("negative")
            row.append(_fa(_rate(neg.false_accepts[k] * 3600.0, neg.seconds)) if isinstance(neg, NegativeSetScore)
                       else "-")
        rows.append(row)
    return header, rows


def confusion_lines(r: Result, set_name: str, limit: int = 12) -> list[str]:
    """The most frequent errors of one set: ``expected -> detected: count``."""
    s = r.scores.get(set_name)
    if not isinstance(s, KeywordSetScore):
        return []
    errors = Counter({(e, d): n for e, row in s.confusions.items() for d, n in row.items() if e != d})
    return [f"{e} -> {d}: {n}" for (e, d), n in errors.most_common(limit)]


def summary_rows(results: Sequence[Result]) -> list[Result]:
    """Per model: the default first, then the best few."""
    chosen: list[Result] = []
    for model in dict.fromkeys(r.model for r in results):
        mine = [r for r in results if r.model == model]
        chosen += [r for r in mine if r.default]
        chosen += [r for r in best(mine) if not r.default]
    return chosen


def render_text(results: Sequence[Result], meta: Mapping[str, Any], keywords: Sequence[str]) -> str:
    header, rows = table_rows(results)
    parts = [text_table(header, rows), "", "Default and best (Pareto: synthetic acc, shared acc, FA/h):",
             text_table(*table_rows(summary_rows(results)))]
    defaults = [r for r in results if r.default]
    if defaults:
        parts += ["", "Per keyword at the default (found/expected; FA/h):", text_table(*keyword_rows(defaults, keywords))]
        for r in defaults:
            for set_name in ("shared", "synthetic"):
                lines = confusion_lines(r, set_name)
                if lines:
                    parts += [f"{r.model} {set_name} errors at the default: " + "; ".join(lines)]
    parts += ["", describe_sets(meta)]
    return "\n".join(parts)


def describe_sets(meta: Mapping[str, Any]) -> str:
    sets = meta.get("sets", {})
    bits = []
    for name in (*SETS, "positives", "negatives"):
        s = sets.get(name)
        if s:
            bits.append(f"{name}: {s['files']} files, {s['seconds'] / 60:.1f} min")
    return "Sets: " + "; ".join(bits) + f". Analysis {meta['analysis_seconds']:.1f} s, replay {meta['replay_seconds']:.1f} s."


def render_markdown(results: Sequence[Result], meta: Mapping[str, Any], keywords: Sequence[str]) -> str:
    out = [
        "## Accuracy",
        "",
        f"Command: `{meta['command']}`  ",
        f"Date: {meta['date']}; machine: {meta['cpu']} ({meta['cpus']} CPUs), {meta['runtime']}, "
        f"Python {meta['python']}.  ",
        describe_sets(meta),
        "",
        "Clip accuracy: the detected keyword sequence equals the expected one exactly. Recall: expected keyword "
        "instances found (order-aware). FA/h: detections per hour of keyword-free audio "
        "(synthetic prose plus the shared negatives). `default` marks the shipped setting, `pareto` the settings "
        "no other setting beats on synthetic accuracy, shared accuracy and FA/h at once. The decision stage is the "
        "plain `KeywordDecider` (no command-mode gate).",
        "",
        "### Default and best settings",
        "",
        markdown_table(*table_rows(summary_rows(results))),
        "",
    ]
    defaults = [r for r in results if r.default]
    if defaults:
        out += ["### Per keyword at the default (found/expected; false accepts per hour)", "",
                markdown_table(*keyword_rows(defaults, keywords)), ""]
        for r in defaults:
            for set_name in ("shared", "synthetic"):
                lines = confusion_lines(r, set_name)
                if lines:
                    out.append(f"- {r.model}, {set_name} set, most frequent errors: " + "; ".join(lines))
        out.append("")
    out += ["### All candidates", "", markdown_table(*table_rows(results)), ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- stride trade-off


def stride_accuracy(strides: Sequence[int], corpus: Path | None = None, model: str = "micronet-l",
                    jobs: int | None = None) -> dict[int, dict[str, Any]]:
    """Accuracy per stride at the default smoothing/threshold/refractory, plain decision stage.

    For the speed benchmark's stride trade-off table. With ``corpus`` (built if missing): the
    shared clips, the synthetic keyword set and the keyword-free stream (probabilities from
    the cache in ``CORPUS/accuracy-cache``); without it, the shared keyword clips only.
    Command mode is evaluated separately (``benchmarks.command_mode``).
    """
    from dataclasses import replace

    sets: list[str] = ["shared"]
    cache = None
    if corpus is not None:
        from benchmarks.corpus import build_corpus

        corpus = Path(corpus).resolve()
        build_corpus(corpus)
        sets += ["synthetic", "negative"]
        cache = corpus / "accuracy-cache"
    loaded = load_model(model)
    clips = collect_clips(sets, loaded.keywords, corpus)
    base = default_setting()
    candidates = [Candidate.from_setting(replace(base, stride=s), default=s == base.stride) for s in strides]
    results, _ = run([loaded], clips, candidates, cache, jobs or min(2, os.cpu_count() or 1))
    out: dict[int, dict[str, Any]] = {}
    for s, r in zip(strides, results):
        out[s] = {"setting": r.candidate, "model": model, "decision_stage": "plain",
                  "shared_accuracy": r.accuracy("shared"), "synthetic_accuracy": r.accuracy("synthetic"),
                  "synthetic_recall": r.recall("synthetic"), "fa_per_hour": r.fa_per_hour}
    return out


# --------------------------------------------------------------------------- CLI


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect_clips(sets: Sequence[str], keywords: Sequence[str], corpus: Path | None) -> list[Clip]:
    shared = shared_dir()
    clips: list[Clip] = []
    if "shared" in sets:
        clips += shared_keyword_clips(shared, keywords)
    if "synthetic" in sets:
        clips += synthetic_keyword_clips(corpus)
    if "negative" in sets:
        clips += prose_clips(corpus) if corpus is not None else []
        clips += shared_negative_clips(shared)
    return clips


def run(models: Sequence[LoadedModel], clips: Sequence[Clip], candidates: Sequence[Candidate],
        cache_dir: Path | None = None, jobs: int = 1,
        progress: Callable[[str], None] | None = None) -> tuple[list[Result], dict[str, Any]]:
    """Analyse every clip once per model, replay every candidate, score. Returns (results, meta)."""
    t0 = time.perf_counter()
    analyzer = Analyzer(models, cache_dir, jobs)
    analyses = analyzer.analyse([c.path for c in clips], progress)
    t1 = time.perf_counter()
    if progress:
        progress(f"replaying {len(candidates)} candidate(s) x {len(models)} model(s)")
    results = evaluate(analyses, clips, candidates, jobs)
    t2 = time.perf_counter()
    first = next(iter(analyses.values()), {})
    sets: dict[str, dict[str, Any]] = {}
    for clip in clips:
        s = sets.setdefault(clip.set, {"files": 0, "seconds": 0.0})
        s["files"] += 1
        s["seconds"] += first[clip.path.resolve()].seconds if first else 0.0
    meta = {"analysis_seconds": t1 - t0, "replay_seconds": t2 - t1, "computed": analyzer.computed,
            "from_cache": analyzer.loaded, "sets": sets}
    return results, meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path(tempfile.gettempdir()) / "kws-corpus",
                        help="synthetic corpus cache dir, built if missing (default: %(default)s)")
    parser.add_argument("--minutes", type=float, default=30.0, help="prose minutes of the corpus (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated (default %(default)s)")
    parser.add_argument("--model-dir", type=Path, default=None, help="installed models (default: the XDG data dir)")
    parser.add_argument("--grid", choices=sorted(GRIDS), default="default", help="candidate settings")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated subset of %(default)s")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--cache", type=Path, default=None,
                        help="probability cache dir (default: CORPUS/accuracy-cache)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the probability cache")
    parser.add_argument("--json", type=Path, help="write every result as JSON here")
    parser.add_argument("--markdown", type=Path, help="write the tables as markdown here (for docs/benchmarks.md)")
    parser.add_argument("--negatives", type=Path, help="a folder of keyword-free WAVs: every detection is a false accept")
    parser.add_argument("--positives", type=Path,
                        help="a folder of keyword WAVs, labelled by name (stop_1.wav, right_left_up.wav) or folder (stop/)")
    args = parser.parse_args(argv)
    for folder in (args.negatives, args.positives):
        if folder is not None and not folder.is_dir():
            print(f"error: {folder} is not a folder of WAV files", file=sys.stderr)
            return 2
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    if not sets or set(sets) - set(SETS):
        parser.error(f"--sets takes a comma-separated subset of {','.join(SETS)}")
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    log = lambda msg: print(f"[accuracy] {msg}", file=sys.stderr, flush=True)  # noqa: E731

    t0 = time.perf_counter()
    corpus = None
    if {"synthetic", "negative"} & set(sets):
        from benchmarks.corpus import CorpusError, build_corpus

        log(f"corpus in {args.corpus} ({args.minutes:g} min of prose, seed {args.seed})")
        try:
            build_corpus(args.corpus, args.minutes, args.seed)
        except CorpusError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        corpus = args.corpus.resolve()
    models = [load_model(name.strip(), args.model_dir) for name in args.models.split(",") if name.strip()]
    keywords = models[0].keywords
    clips = collect_clips(sets, keywords, corpus)
    try:
        if args.negatives is not None:
            clips += folder_clips(args.negatives, "negatives", keywords)
        if args.positives is not None:
            clips += folder_clips(args.positives, "positives", keywords)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cache = None if args.no_cache else (args.cache or (corpus or args.corpus) / "accuracy-cache")
    candidates = grid(args.grid)
    results, meta = run(models, clips, candidates, cache, args.jobs, log)
    meta.update({
        "command": " ".join(["python -m benchmarks.accuracy", *map(shlex.quote, sys.argv[1:] if argv is None else argv)]),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "runtime": runtime_id(models[0].model), "grid": args.grid, "jobs": args.jobs,
        "models": {m.name: {"sha1": m.sha1, "file": m.path.name} for m in models},
        "total_seconds": time.perf_counter() - t0,
    })
    print(render_text(results, meta, keywords))
    print(f"Total {meta['total_seconds']:.1f} s ({meta['computed']} analyses computed, {meta['from_cache']} from cache).")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"meta": meta, "results": [r.as_dict(details=r.default or r.pareto) for r in results]}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(render_markdown(results, meta, keywords))
    return 0


if __name__ == "__main__":
    sys.exit(main())
