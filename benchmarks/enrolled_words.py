"""Words of a user's own (issue 23): recall and false accepts of `kws_stream.enrol`.

Protocol (issue 23 item 4). For each of computer, jarvis, smart_mirror and each number of
takes (3, 5, 10), several random draws (seeds 0..N-1) of recordings of that word are
enrolled with `WordMatcher.enrol` (a recording whose take `check_take` refuses is not
drawn: a user would record it again). Then every command-shaped burst (found as the
product finds them, `benchmarks.enrol_data`) is scored:

* found: the other recordings of the word in the same split, one that fires on any of its
  bursts is found (a recording in which the gate finds no burst is a miss);
* other phrases: the recordings of the two other words, per 100 recordings;
* keyword clips: shared/audio/keywords + real-keywords, per 100 clips;
* real-dev: bursts of real running speech that fire, per hour of speech.

Counts are pooled over words and draws, with 95 % intervals (Wilson for proportions,
exact Poisson for rates; draws reuse the same recordings, so the intervals are too narrow
by up to the square root of the number of draws). The threshold was tuned on the dev split
(even file indices, half the real-dev speakers); the validation split (odd indices, the
other speakers) was not looked at for tuning. The negative speech bank the matcher is
calibrated with (`--build-bank`) is the dev half of real-dev, so dev's real-dev false
accepts are optimistic; validation's are not.

Usage::

    python -m benchmarks.enrolled_words [--draws 10] [--split dev val] [--sweep] [--compare]
    python -m benchmarks.enrolled_words --quick   # smoke test: a few files, one draw
    python -m benchmarks.enrolled_words --build-bank   # rewrite kws_stream/enrol_bank.npz
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from benchmarks.enrol_data import MAX_MARGIN_S, Recording, Split, load_split
from benchmarks.enrol_stats import poisson_interval, wilson_interval
from kws_stream.enrol import BURST_MARGIN_S, DEFAULT_THRESHOLD, EnrolledWord, WordMatcher, check_take, load_matcher
from kws_stream.enrol_bank import BANK_FILE, save_bank
from kws_stream.enrol_embed import SpeechEmbedding
from kws_stream.features import MICRONET

TAKES = (3, 5, 10)
RATE = MICRONET.sample_rate


def trim(burst: np.ndarray, margin_s: float = BURST_MARGIN_S) -> np.ndarray:
    """A burst cut with MAX_MARGIN_S each side, with `margin_s` instead."""
    cut = round((MAX_MARGIN_S - margin_s) * RATE)
    return burst[cut:len(burst) - cut] if cut else burst


@dataclass
class Scored:
    """Every burst of a split embedded once: (set, word label, recording index) per burst."""

    where: list[tuple[str, str, int]]
    bursts: list[np.ndarray]  # with MAX_MARGIN_S each side
    features: list[np.ndarray]
    cpu_ms: float  # embedding CPU per burst


def embed_split(split: Split, matcher: WordMatcher) -> Scored:
    where, bursts = [], []
    for word, recs in split.custom.items():
        for i, rec in enumerate(recs):
            where += [("custom", word, i)] * len(rec.bursts)
            bursts += rec.bursts
    for i, rec in enumerate(split.clips):
        where += [("clip", "", i)] * len(rec.bursts)
        bursts += rec.bursts
    for rec in split.speech:
        where += [("speech", "", 0)] * len(rec.bursts)
        bursts += rec.bursts
    t0 = time.process_time()
    features = [matcher.embedding.embed(trim(b)) for b in bursts]
    return Scored(where, bursts, features, (time.process_time() - t0) * 1000 / max(1, len(bursts)))


@dataclass
class Tally:
    found: int = 0
    positives: int = 0
    other: int = 0
    others: int = 0
    clips: int = 0
    clip_total: int = 0
    speech: int = 0
    hours: float = 0.0
    enrol_cpu: float = 0.0
    enrolments: int = 0

    def add(self, other: Tally) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def evaluate(split: Split, scored: Scored, scores: np.ndarray, word: str, used: set[int],
             threshold: float) -> Tally:
    """Counts for one enrolled word whose per-burst scores are `scores`."""
    fire = scores >= threshold
    t = Tally(hours=split.speech_hours)
    fired: dict[str, set[int]] = {}
    for (kind, label, i), f in zip(scored.where, fire):
        if not f:
            continue
        if kind == "speech":
            t.speech += 1
        else:
            fired.setdefault(kind + ":" + label, set()).add(i)
    t.positives = len(split.custom[word]) - len(used)
    t.found = len(fired.get("custom:" + word, set()) - used)
    t.others = sum(len(split.custom[w]) for w in split.custom if w != word)
    t.other = sum(len(fired.get("custom:" + w, set())) for w in split.custom if w != word)
    t.clip_total = len(split.clips)
    t.clips = len(fired.get("clip:", set()))
    return t


def word_scores(matcher: WordMatcher, word: EnrolledWord, scored: Scored) -> np.ndarray:
    return np.array([matcher.score_features(word, f) for f in scored.features])


def takeable(recs: list[Recording]) -> list[int]:
    """The recordings a user could enrol from (`check_take` accepts them)."""
    return [i for i, r in enumerate(recs) if r.take is not None and check_take(r.take) is None]


def takes_of(recs: list[Recording], chosen: Sequence[int]) -> list[np.ndarray]:
    return [t for t in (recs[i].take for i in chosen) if t is not None]


def run_split(split: Split, matcher: WordMatcher, draws: int, takes: Sequence[int],
              thresholds: Sequence[float]) -> tuple[dict[tuple, Tally], Scored, dict[str, int]]:
    scored = embed_split(split, matcher)
    out: dict[tuple, Tally] = {}  # (takes, threshold) and (takes, threshold, word)
    refused: dict[str, int] = {}
    for word, recs in split.custom.items():
        ok = takeable(recs)
        refused[word] = len(recs) - len(ok)
        for k in takes:
            for seed in range(draws):
                pick = [ok[j] for j in np.random.default_rng(seed).choice(len(ok), k, replace=False)]
                t0 = time.process_time()
                enrolled = matcher.enrol(word, takes_of(recs, pick))
                cpu = time.process_time() - t0
                scores = word_scores(matcher, enrolled, scored)
                for thr in thresholds:
                    tally = evaluate(split, scored, scores, word, set(pick), thr)
                    tally.enrol_cpu, tally.enrolments = cpu, 1
                    out.setdefault((k, thr), Tally()).add(tally)
                    out.setdefault((k, thr, word), Tally()).add(tally)
    return out, scored, refused


def row(label: str, t: Tally) -> list[str]:
    def pct(x: int, n: int, scale: float = 100.0) -> str:
        lo, hi = wilson_interval(x, n)
        return f"{x}/{n} = {scale * x / max(1, n):.1f} [{scale * lo:.1f}-{scale * hi:.1f}]"

    lo, hi = poisson_interval(t.speech)
    return [label, pct(t.found, t.positives), pct(t.other, t.others), pct(t.clips, t.clip_total),
            f"{t.speech} in {t.hours:.2f} h = {t.speech / t.hours:.1f} [{lo / t.hours:.1f}-{hi / t.hours:.1f}]",
            f"{t.enrol_cpu / t.enrolments:.2f}" if t.enrolments else "-"]


HEAD = ["takes", "found % [95 % CI]", "other phrases /100", "keyword clips /100", "real-dev FA/h", "enrol CPU s"]


def table(rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(x) for x in col) for col in zip(HEAD, *rows)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(r, widths)) for r in [HEAD, *rows])


def build_bank() -> int:
    from benchmarks.command_mode import real_dev_split
    from testsupport.audio import read_wav

    embedding = SpeechEmbedding()
    utterances = [embedding.embed(read_wav(p)) for p in real_dev_split("dev")]
    save_bank(BANK_FILE, utterances)
    print(f"{BANK_FILE}: {sum(len(u) for u in utterances)} embeddings of {len(utterances)} dev utterances")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--split", nargs="+", default=["dev", "val"], choices=["dev", "val"])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/kws-enrol-cache"))
    ap.add_argument("--sweep", action="store_true", help="also recall and false accepts over thresholds (5 takes)")
    ap.add_argument("--markdown", type=Path, help="also write the tables as markdown to this file")
    ap.add_argument("--quick", action="store_true", help="smoke test: a few recordings, one draw, 3 takes")
    ap.add_argument("--compare", action="store_true",
                    help="also MFCC vs embedding vs embedding+bank DTW, 5 takes (benchmarks.enrol_compare)")
    ap.add_argument("--build-bank", action="store_true", help="rebuild the negative speech bank and stop")
    args = ap.parse_args(argv)
    if args.build_bank:
        return build_bank()
    matcher = load_matcher()
    takes, draws = ((3,), 1) if args.quick else (TAKES, args.draws)
    sweep = [round(x, 3) for x in np.arange(0.44, 0.575, 0.01)] if args.sweep else []
    thresholds = sorted({DEFAULT_THRESHOLD, *sweep})
    out, md = [], []
    done: dict[str, tuple[Split, Scored]] = {}
    for name in args.split:
        split = load_split(name, args.cache)
        if args.quick:
            split = small(split)
        tallies, scored, refused = run_split(split, matcher, draws, takes, thresholds)
        done[name] = split, scored
        per_burst = burst_cpu_ms(matcher, split, scored)
        heard = {w: f"{sum(1 for r in recs if r.bursts)}/{len(recs)}" for w, recs in split.custom.items()}
        title = (f"{name}: threshold {DEFAULT_THRESHOLD}, {draws} draws x {len(split.custom)} words; "
                 f"recordings in which the gate finds a command-shaped burst: {heard}; "
                 f"score() {per_burst:.1f} ms CPU per burst with 5 takes (its embedding: {scored.cpu_ms:.1f} ms); "
                 f"takes refused by check_take: {refused}")
        rows = [row(str(k), tallies[(k, DEFAULT_THRESHOLD)]) for k in takes]
        rows += [row(f"{k}: {w}", tallies[(k, DEFAULT_THRESHOLD, w)]) for k in takes[1:2] or takes for w in split.custom
                 if (k, DEFAULT_THRESHOLD, w) in tallies]
        out += [f"== {title}", table(rows, False), ""]
        md += [f"### {title}", "", table(rows, True), ""]
        if sweep and 5 in takes:
            rows = [row(f"5 @ {thr:.2f}", tallies[(5, thr)]) for thr in sweep]
            out += [f"== {name}: 5 takes over thresholds", table(rows, False), ""]
            md += [f"### {name}: 5 takes over thresholds", "", table(rows, True), ""]
    if args.compare and len(done) == 2:
        from benchmarks.enrol_compare import compare

        rows = compare(done["dev"], done["val"], lambda b: matcher.embedding.embed(trim(b)), matcher.bank, draws)
        title = "matchers compared (5 takes; threshold chosen on dev for the targets, kept for val)"
        out += [f"== {title}", table(rows, False), ""]
        md += [f"### {title}", "", table(rows, True), ""]
    print("\n".join(out))
    if args.markdown:
        args.markdown.write_text("\n".join(md) + "\n")
    return 0


def small(split: Split) -> Split:
    """The --quick subset: 12 recordings per word, 12 clips, the real-dev stream's first bursts."""
    speech = [Recording(r.name, r.label, r.bursts[:10], r.hops[:10]) for r in split.speech]
    hours = split.speech_hours * min(1.0, 10 / max(1, len(split.speech[0].bursts)))
    return Split({w: r[:12] for w, r in split.custom.items()}, split.clips[:12], speech, hours)


def burst_cpu_ms(matcher: WordMatcher, split: Split, scored: Scored) -> float:
    """CPU of `WordMatcher.score` (embedding + DTW) per burst, for a word of 5 takes, over
    up to 100 bursts (as the product calls it: on the burst's audio)."""
    word, recs = next(iter(split.custom.items()))
    ok = takeable(recs)[:5]
    enrolled = matcher.enrol(word, takes_of(recs, ok)) if len(ok) >= 3 else None
    bursts = [b for r in [*split.clips, *split.speech] for b in r.bursts][:100]
    if enrolled is None or not bursts:
        return float("nan")
    t0 = time.process_time()
    for b in bursts:
        matcher.score(enrolled, trim(b))
    return (time.process_time() - t0) * 1000 / len(bursts)


if __name__ == "__main__":
    sys.exit(main())
