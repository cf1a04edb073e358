"""Accuracy harness: clip accuracy, recall, confusions and false accepts per hour.

Three sets (:mod:`benchmarks.accuracy_clips`): ``shared`` (the real keyword clips),
``synthetic`` (the corpus keyword set) and ``negative`` (keyword-free: synthetic prose
and the shared negatives, LibriSpeech sentences, noise, silence, "marvin").

How it stays fast: MFCC and inference are the expensive part, the decision stage is
cheap. So each (model, file) is analysed once, at stride 1, and cached
(:mod:`benchmarks.accuracy_analysis`); every candidate decision setting is then replayed
over those probabilities exactly as the Pipeline picks its windows
(:mod:`benchmarks.accuracy_replay`; ``tests/test_accuracy_harness.py`` checks it against
the real Pipeline), scored (:mod:`benchmarks.accuracy_score`) and tabulated
(:mod:`benchmarks.accuracy_report`). This module is the command line, and
:func:`stride_accuracy` for the speed benchmark.

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
import datetime
import json
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .accuracy_analysis import Analyzer, LoadedModel, load_model, runtime_id
from .accuracy_clips import SETS, Clip, add_folder_options, collect_clips, folder_clips, folder_error
from .accuracy_replay import GRIDS, Candidate, default_setting, grid
from .accuracy_report import render_markdown, render_text
from .accuracy_score import Result, evaluate

DEFAULT_MODELS = ("micronet-l", "micronet-m")


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
    add_folder_options(parser)
    args = parser.parse_args(argv)
    if error := folder_error(args.negatives, args.positives):
        print(error, file=sys.stderr)
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
