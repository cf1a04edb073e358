"""The shipped judge end to end: the real `Pipeline` (MFCC, MicroNet, command mode, the judge
from `kws_stream/judge_weights.npz`) on the validation half of `benchmarks.judge_data`'s sets,
with and without the judge; the judge's CPU time per candidate.

    python -m benchmarks.judge_e2e [--split val] [--list-rejected] [--set min_snr_db=15 ...]

Plain mode runs too over the real keyword recordings, and the last lines print issue 22's
targets against what was measured, with counts and 95 % intervals.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.command_mode import LABELS, SHARED, Stream, command_settings
from benchmarks.enrol_stats import exact_proportion_interval, poisson_interval
from benchmarks.judge_compare import REAL_POS
from benchmarks.judge_data import NEGATIVE, sets_for
from kws_stream.backend import KeywordModel
from kws_stream.command import CommandParams
from kws_stream.judge import Judge, JudgeVerdict, load_judge
from kws_stream.pipeline import Pipeline, PipelineParams

BLOCK = 1600  # 0.1 s, as `detect` reads


class Timed:
    """The judge, with the CPU time of each verdict recorded (what `Pipeline` calls of it)."""

    def __init__(self, judge: Judge) -> None:
        self._judge = judge
        self.cpu: list[float] = []
        self.samples, self.keywords, self.span = judge.samples, judge.keywords, judge.span

    def judge(self, audio: np.ndarray, keyword: str, score: float) -> JudgeVerdict:
        t0 = time.process_time()
        v = self._judge.judge(audio, keyword, score)
        self.cpu.append(time.process_time() - t0)
        return v


PLAIN = dataclasses.replace(PipelineParams(), command=dataclasses.replace(PipelineParams().command, enabled=False))


def run(model: KeywordModel, s: Stream, judge, command: CommandParams | None = None,
        params: PipelineParams | None = None) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(reported, rejected by the judge) as (keyword, window end s); `params` wins over `command`."""
    if params is None:
        params = PipelineParams() if command is None else PipelineParams(command=command)
    p = Pipeline(model, "micronet-l", s.name, params, judge=judge)
    rejected: list[tuple[str, float]] = []
    p.rejection_observer = lambda d, r: rejected.append((d.keyword, d.end)) if r.rule.value == "judge" else None
    found = []
    for i in range(0, len(s.audio), BLOCK):
        found += p.feed(s.audio[i:i + BLOCK])
    found += p.finish()
    return [(d.keyword, d.end) for d in found], rejected


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="val")
    ap.add_argument("--corpus", type=Path, default=Path("/tmp/kws-corpus-val"))
    ap.add_argument("--list-rejected", action="store_true")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="[command] settings to measure instead of the defaults (min_snr_db=15)")
    args = ap.parse_args(argv)
    try:
        command = command_settings(args.set)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.split}, {command}")
    loaded = load_judge()
    if loaded is None:
        print("error: the judge cannot load here (see the line above)", file=sys.stderr)
        return 2
    timed = Timed(loaded)
    model = KeywordModel(SHARED / "models" / "kws_micronet_l.tflite", LABELS)
    sets = sets_for(args.split, args.corpus)
    print(f"{'kind':18} {'size':>10}  {'rules alone':>16}  {'rules + judge':>16}")
    totals: dict[str, list[int]] = {}
    plain = 0
    for kind, streams in sets.items():
        if kind in ("keywords_gaps",):
            continue
        counts = np.zeros((2, 2), dtype=int)  # [without, with] x [true, false]
        for s in streams:
            for k, j in enumerate((None, timed)):
                found, rejected = run(model, s, j, command)
                for kw, _end in found:
                    true = kind not in NEGATIVE and any(kw == w for w, _ in s.words)
                    counts[k, 0 if true else 1] += 1
                if args.list_rejected and j is not None and rejected:
                    print(f"  judge rejected {rejected} in {s.name}")
        size = f"{sum(s.hours for s in streams) * 60:.1f} min" if kind in ("real_speech", "tv_alone") \
            else f"{len(streams)} clips"
        print(f"{kind:18} {size:>10}  {counts[0, 0]:>7} / {counts[0, 1]:<7}  {counts[1, 0]:>7} / {counts[1, 1]:<7}"
              "   (true keywords / false accepts)", flush=True)
        totals[kind] = [int(x) for x in counts.ravel()]
        if kind in REAL_POS:
            plain += sum(any(kw == w for w, _ in s.words) for s in streams for kw, _ in run(model, s, None, params=PLAIN)[0])
    hours = sum(s.hours for k in ("real_speech", "tv_alone") for s in sets[k])
    fa = totals["real_speech"][3] + totals["tv_alone"][3]
    lo, hi = poisson_interval(fa)
    n = len(sets["custom_words"]) + len(sets["custom_raw"])
    cu = totals["custom_words"][3] + totals["custom_raw"][3]
    clo, chi = exact_proportion_interval(cu, n)
    print(f"with the judge: real speech {fa} FA in {hours * 60:.1f} min = {fa / hours:.1f}/h [{lo / hours:.1f}-{hi / hours:.1f}]; "
          f"custom-words {cu}/{n} = {100 * cu / n:.2f} per 100 [{100 * clo:.2f}-{100 * chi:.2f}]")
    cpu = np.array(timed.cpu) * 1e3
    print(f"judge CPU per candidate ({len(cpu)}): median {np.median(cpu):.1f} ms, p95 {np.percentile(cpu, 95):.1f} ms, "
          f"max {cpu.max():.1f} ms (process time, loaded 2-core VM)")
    alone, judged = (sum(totals[k][i] for k in REAL_POS if k in totals) for i in (0, 2))  # shared_padded: val only
    rlo, rhi = exact_proportion_interval(judged, plain)

    def met(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    print(f"targets ({args.split}, rules + judge):")
    print(f"  real running speech <= 2 FA/h: {fa} in {hours * 60:.1f} min = {fa / hours:.1f}/h "
          f"[{lo / hours:.1f}-{hi / hours:.1f}]: {met(fa / hours <= 2)}")
    print(f"  command-shaped non-keywords <= 1 per 100: {cu}/{n} = {100 * cu / n:.2f} "
          f"[{100 * clo:.2f}-{100 * chi:.2f}]: {met(100 * cu / n <= 1)}")
    print(f"  real keyword recordings >= 97 % of plain: {judged} of plain's {plain} = {100 * judged / max(plain, 1):.1f} % "
          f"[{100 * rlo:.1f}-{100 * rhi:.1f}] (rules alone {alone} = {100 * alone / max(plain, 1):.1f} %): "
          f"{met(judged >= 0.97 * plain)}")
    print(f"  judge CPU <= 15 ms per candidate: p95 {np.percentile(cpu, 95):.1f} ms: {met(bool(np.percentile(cpu, 95) <= 15))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
