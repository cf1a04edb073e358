"""The expensive half of the accuracy harness: each (model, file) analysed once.

At stride 1, with the pipeline's own :class:`~kws_stream.sources.WavFileSource`,
:class:`~kws_stream.features.FeatureWindow` and :class:`~kws_stream.backend.KeywordModel`
(the front end is not reimplemented); the per-window probabilities are kept in memory
and in an ``.npz`` cache keyed by the model's SHA-1, the file (path, size, mtime), the
front-end source and the runtime.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kws_stream.backend import KeywordModel
from kws_stream.decision import NON_KEYWORDS
from kws_stream.features import FeatureParams, FeatureWindow, MfccExtractor
from kws_stream.sources import WavFileSource

from .accuracy_clips import shared_dir

CACHE_VERSION = 1


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
