"""Rows of commands and the second judge (issue 22): a command right after another must not be lost.

Two sets, run through the real `Pipeline` (MicroNet-L, command mode event-driven, 0.1 s blocks)
with and without the judge:

* `rows`: rows of 2-4 real keyword clips (`real-keywords/`, the split's clips of
  `judge_data.real_keywords_split`; each clip trimmed to its voiced part, different words in a
  row), 0.1-0.5 s of room tone between them, 1 s before and 1.5 s after; dev for tuning,
  validation for the figure;
* `soak`: `keywords/yes_no_go_stop.wav` (a quick row, as the soak plays it) after 1-60 s of
  digital silence or of room tone, and 2 s of the same after.

A word is found when a detection names it with its window ending within 1.5 s of the word's end
(`command_mode.match`, in order); anything else reported is counted as wrong. Latency: from the
word's end (the trimmed clip's) to the end of the 0.1 s block whose `feed` returned it, p50/p95.

    python -m benchmarks.judge_rows [--split val] [--rows 80]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks.command_mode import LABELS, RATE, SHARED, Fired, Stream, match
from benchmarks.judge_data import real_keywords_split
from kws_stream.judge import KEYWORDS
from testsupport.audio import read_wav, room_tone

GAPS_S = (0.1, 0.5)
LEAD_INS_S = (1, 3, 10, 30, 60)
SEED = {"dev": 1, "val": 2}
BLOCK = 1600  # 0.1 s, as `detect` reads


def trimmed(x: np.ndarray, floor_db: float = 30.0, margin_s: float = 0.03) -> np.ndarray:
    """The voiced part of a clip: 10 ms frames within `floor_db` of the loudest, plus a margin."""
    step = RATE // 100
    frames = x[:len(x) // step * step].astype(np.float64).reshape(-1, step)
    db = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1.0)
    loud = np.flatnonzero(db >= db.max() - floor_db)
    margin = int(margin_s * RATE)
    return x[max(0, loud[0] * step - margin):min(len(x), (loud[-1] + 1) * step + margin)]


def row_streams(split: str, count: int) -> list[Stream]:
    """`count` rows of 2-4 different keywords from the split's real keyword clips."""
    rng = np.random.default_rng(SEED[split])
    clips = real_keywords_split(split)
    by_word = {kw: [f for f in clips if f.stem.split("_")[0] == kw] for kw in KEYWORDS}
    by_word = {kw: files for kw, files in by_word.items() if files}
    out = []
    for i in range(count):
        words = rng.choice(sorted(by_word), size=int(rng.integers(2, 5)), replace=False)
        pieces, truth, pos = [room_tone(1.0, offset=i * 997)], [], RATE
        for j, kw in enumerate(words):
            if j:
                gap = room_tone(float(rng.uniform(*GAPS_S)), offset=pos)
                pieces.append(gap)
                pos += len(gap)
            files = by_word[str(kw)]
            word = trimmed(read_wav(files[int(rng.integers(len(files)))]))
            pieces.append(word)
            pos += len(word)
            truth.append((str(kw), pos / RATE))
        pieces.append(room_tone(1.5, offset=pos))
        out.append(Stream(f"{split}:row{i:03d}:{'-'.join(str(w) for w in words)}", np.concatenate(pieces), truth))
    return out


YES_NO_GO_STOP = (("yes", 0.75), ("no", 1.45), ("go", 2.55), ("stop", 3.4))  # word ends in the clip (s), from its level


def soak_streams() -> list[Stream]:
    """yes_no_go_stop.wav after 1-60 s of digital silence or room tone (what the soak plays)."""
    clip = read_wav(SHARED / "audio" / "keywords" / "yes_no_go_stop.wav")
    out = []
    for lead in LEAD_INS_S:
        for bed in ("silence", "room"):
            before, after = (np.zeros(round(s * RATE), np.int16) for s in (lead, 2.0)) if bed == "silence" \
                else (room_tone(lead), room_tone(2.0, offset=lead * RATE))
            x = np.concatenate([before, clip, after])
            out.append(Stream(f"soak:{bed}:{lead}s", x, [(kw, lead + end) for kw, end in YES_NO_GO_STOP]))
    return out


def run(model, s: Stream, judge, weights=None) -> list[Fired]:
    """What the pipeline reports on `s`: keyword, window end and when it was reported (end of
    the 0.1 s block that returned it), in seconds."""
    from kws_stream.pipeline import Pipeline, PipelineParams

    p = Pipeline(model, "micronet-l", s.name, PipelineParams(), judge=judge)
    out: list[Fired] = []
    for i in range(0, len(s.audio), BLOCK):
        out += [Fired(d.keyword, d.end, min(i + BLOCK, len(s.audio)) / RATE) for d in p.feed(s.audio[i:i + BLOCK])]
    return out + [Fired(d.keyword, d.end, len(s.audio) / RATE) for d in p.finish()]


def count(streams: list[Stream], model, judge) -> tuple[int, int, int, list[float], list[str]]:
    """(words found, words, wrong reports, latencies from the words' ends, streams missing a word)."""
    hits = total = wrong = 0
    latencies: list[float] = []
    missing = []
    for s in streams:
        found = run(model, s, judge)
        h, w, lat = match(s.words, found, joined=True)
        hits, total, wrong = hits + h, total + len(s.words), wrong + w
        latencies += lat
        if h < len(s.words):
            missing.append(f"{s.name}: {[f.keyword for f in found]}")
    return hits, total, wrong, latencies, missing


def main(argv: list[str] | None = None) -> int:
    from kws_stream.backend import KeywordModel
    from kws_stream.judge import Judge, embedding_models, load_judge

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="val", choices=("dev", "val"))
    ap.add_argument("--rows", type=int, default=80)
    ap.add_argument("--list", action="store_true", help="name the streams that lost a word")
    ap.add_argument("--weights", type=Path, help="another judge's weights (judge_train --out)")
    args = ap.parse_args(argv)
    judge = load_judge()
    if judge is not None and args.weights:
        judge = Judge(embedding_models() or Path(), args.weights)
    if judge is None:
        print("error: the judge cannot load here (see the line above)", file=sys.stderr)
        return 2
    model = KeywordModel(SHARED / "models" / "kws_micronet_l.tflite", LABELS)
    sets = {f"rows ({args.split})": row_streams(args.split, args.rows), "yes_no_go_stop after quiet": soak_streams()}
    print(f"{'set':28} {'streams':>7}  {'rules alone':>36}  {'rules + judge':>36}")
    for name, streams in sets.items():
        cells, lost = [], []
        for j in (None, judge):
            hits, total, wrong, lat, missing = count(streams, model, j)
            p50, p95 = np.percentile(lat, [50, 95]) * 1e3
            cells.append(f"{hits}/{total} found, {wrong} wrong, {p50:.0f}/{p95:.0f} ms")
            lost.append(missing)
        print(f"{name:28} {len(streams):>7}  {cells[0]:>36}  {cells[1]:>36}", flush=True)
        if args.list:
            for label, missing in zip(("rules alone", "rules + judge"), lost):
                for m in missing:
                    print(f"    {label} lost a word: {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
