"""Candidates for a second judge (issue 22): every keyword command mode accepts, with its audio.

Runs the pipeline's own `Spotter` (through `benchmarks.command_mode.replay`, over cached
MicroNet traces) on both sides of `command_mode`'s dev/validation split and keeps, for every
decision, the audio around it, the keyword, MicroNet's probabilities and the label:

* negatives (every decision is a false accept): the split's half of `real-dev` (by speaker,
  `command_mode.real_dev_split`, gapped as `--targets` does), that half as a TV 20 dB below,
  and `custom-words/` (command-shaped non-keywords, 0.5 s of room tone around each; even file
  index dev, odd validation: which speaker made which file is not recorded);
* positives: `real-keywords/` (room tone around each; Speech Commands clips, one speaker
  each, alternate within a keyword; the projects' own recordings are split by source), the
  shared keyword clips (validation only), the synthetic corpus's keywords with a TV 20 dB
  below and after 1-60 s of quiet (`command_mode.split_sets`), rows of 2-4 of the split's real
  keyword clips 0.1-0.5 s apart (`judge_rows.row_streams`: ROWS of them). A decision on a positive
  stream is a true keyword when it names a word the stream holds (near its time, when known).

`custom_raw` and `real_keywords_raw` are the same clips as recorded (no room tone added: the
word is near the stream's start). Command mode's accepts are the candidates a judge sees
(`mode="command"`); plain mode's detections are kept too (`mode="plain"`): training material
of the same kind (a keyword-like sound MicroNet scores high) and, on validation, a larger
sample of hard negatives than command mode leaves, reported apart from the targets.

Each candidate keeps SEGMENT_S of audio ending at `anchor`, MAX_AFTER_S after the end of the
window that fired, whenever the rules decided (`emitted` keeps when that was):
`benchmarks.judge_features --after A` cuts the judge's span, ending A after the window, from it.
Zeros stand in for audio before the stream's start and after its end. `previous` is the window
end of the mode's decision before it in the same stream (-inf: none), where a row's word starts.

    python -m benchmarks.judge_data [--out /work/judge-cache/candidates.npz]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.command_mode import (
    AUDIO,
    HOP_SAMPLES,
    LABELS,
    RATE,
    SPLITS,
    Fired,
    Stream,
    padded,
    replay,
    smoothed_probs,
    split_sets,
    traces_for,
)
from kws_stream.command import CommandParams
from kws_stream.decision import DecisionParams
from testsupport.audio import read_wav

ROWS = {"dev": 240, "val": 80}  # rows of 2-4 real keyword clips (`judge_rows`), 0.1-0.5 s apart
SEGMENT_S = 3.0
MAX_AFTER_S = 0.3  # the latest end of a judged span measured, after the window that fired
NEGATIVE = ("real_speech", "tv_alone", "custom_words", "custom_raw")
SC_SOURCES = ("gtagamer", "niconrg2", "vinsis")  # Speech Commands clips: one speaker per clip
CUSTOM = AUDIO / "custom-words"
REAL_KEYWORDS = AUDIO / "real-keywords"


def custom_words(split: str, pad: bool = True) -> list[Stream]:
    files = sorted(CUSTOM.glob("*.wav"))
    return [Stream(f"{split}:custom{'' if pad else '-raw'}:{f.name}", padded(read_wav(f)) if pad else read_wav(f))
            for f in files if SPLITS[int(f.stem.rsplit("_", 1)[1]) % 2] == split]


def real_keywords_split(split: str) -> list[Path]:
    """Speech Commands clips alternate within each keyword; the projects' own recordings
    (several clips per speaker) go by source, sorted sources alternating."""
    files = sorted(REAL_KEYWORDS.glob("*.wav"))
    own = sorted({f.stem.split("_")[1] for f in files} - set(SC_SOURCES))
    out: list[Path] = []
    seen: dict[str, int] = {}
    for f in files:
        kw, source = f.stem.split("_")[:2]
        if source in SC_SOURCES:
            i = seen[kw] = seen.get(kw, -1) + 1
            part = SPLITS[i % 2]
        else:
            part = SPLITS[own.index(source) % 2]
        if part == split:
            out.append(f)
    return out


def real_keywords(split: str, pad: bool = True) -> list[Stream]:
    return [Stream(f"{split}:realkw{'' if pad else '-raw'}:{f.name}", padded(read_wav(f)) if pad else read_wav(f),
                   [(f.stem.split("_")[0], math.nan)]) for f in real_keywords_split(split)]


def sets_for(split: str, corpus: Path) -> dict[str, list[Stream]]:
    base = split_sets(split, corpus)
    sets = {kind: base[f"{split}:{kind}"] for kind in ("real_speech", "tv_alone", "keywords_tv", "keywords_gaps")}
    if split == "val":
        sets["shared_padded"] = base["val:shared_padded"]
    sets["custom_words"] = custom_words(split)
    sets["real_keywords"] = real_keywords(split)
    sets["custom_raw"] = custom_words(split, pad=False)  # as recorded: the word near the stream's start
    sets["real_keywords_raw"] = real_keywords(split, pad=False)
    from benchmarks.judge_rows import row_streams  # (it builds its rows from `real_keywords_split`)

    sets["rows"] = row_streams(split, ROWS[split])
    return sets


def is_true(s: Stream, f: Fired) -> bool:
    return any(kw == f.keyword and (math.isnan(end) or abs(f.window_end - end) <= 1.5) for kw, end in s.words)


def segment(x: np.ndarray, anchor_s: float) -> np.ndarray:
    """SEGMENT_S of `x` ending at `anchor_s`, zeros before its start and after its end."""
    n, end = int(SEGMENT_S * RATE), int(round(anchor_s * RATE))
    x = np.concatenate([np.zeros(n, dtype=np.int16), x, np.zeros(max(0, end - len(x)), dtype=np.int16)])
    return x[end:end + n]


def collect(sets: dict[str, dict[str, list[Stream]]], traces, plain_too: Sequence[str]) -> dict[str, np.ndarray]:
    rows: dict[str, list] = {k: [] for k in ("split", "kind", "stream", "mode", "keyword", "label", "window_end",
                                             "emitted", "previous", "anchor", "audio", "probs", "smoothed")}
    for split, by_kind in sets.items():
        for kind, streams in by_kind.items():
            for s in streams:
                trace = traces[s.name]
                smooth = smoothed_probs(trace.probs)  # NaN rows (no window yet) are not averaged in
                modes = [("command", CommandParams())]
                if split in plain_too:
                    modes.append(("plain", CommandParams(enabled=False)))
                for mode, params in modes:
                    previous = -math.inf  # the window end of the mode's previous decision in the stream
                    for f in replay(trace, DecisionParams(), params):
                        anchor = f.window_end + MAX_AFTER_S
                        e = int(round(f.window_end * RATE / HOP_SAMPLES)) - 1
                        rows["split"].append(split)
                        rows["kind"].append(kind)
                        rows["stream"].append(s.name)
                        rows["mode"].append(mode)
                        rows["keyword"].append(f.keyword)
                        rows["label"].append(kind not in NEGATIVE and is_true(s, f))
                        rows["window_end"].append(f.window_end)
                        rows["emitted"].append(f.emitted)
                        rows["previous"].append(previous)
                        previous = f.window_end
                        rows["anchor"].append(anchor)
                        rows["audio"].append(segment(s.audio, anchor))
                        rows["probs"].append(np.nan_to_num(trace.probs[e], nan=0.0))
                        rows["smoothed"].append(smooth[e])
    return {k: np.array(v) for k, v in rows.items()}


def summary(data: dict[str, np.ndarray], sets) -> str:
    lines = ["split  kind           audio      command: true/false   plain: true/false"]
    for split, by_kind in sets.items():
        for kind, streams in by_kind.items():
            if kind in ("real_speech", "tv_alone"):
                size = f"{sum(s.hours for s in streams) * 60:.1f} min"
            else:
                size = f"{len(streams)} clips"
            sel = (data["split"] == split) & (data["kind"] == kind)
            cells = []
            for mode in ("command", "plain"):
                m = sel & (data["mode"] == mode)
                cells.append(f"{int(data['label'][m].sum())}/{int((~data['label'][m]).sum())}")
            lines.append(f"{split:5}  {kind:13}  {size:9}  {cells[0]:>20}  {cells[1]:>17}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/work/judge-cache/candidates.npz"))
    ap.add_argument("--corpus", type=Path, default=Path("/tmp/kws-corpus"))
    ap.add_argument("--validation-corpus", type=Path, default=Path("/tmp/kws-corpus-val"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/kws-command-cache"), help="MicroNet traces")
    args = ap.parse_args(argv)
    for corpus in (args.corpus, args.validation_corpus):
        if not (corpus / "keywords.csv").exists():
            print(f"error: no corpus in {corpus}: build it with python -m benchmarks.corpus", file=sys.stderr)
            return 2
    sets = {"dev": sets_for("dev", args.corpus), "val": sets_for("val", args.validation_corpus)}
    flat = {f"{split}:{kind}": streams for split, by in sets.items() for kind, streams in by.items()}
    traces = traces_for(flat, "micronet-l", args.cache)
    data = collect(sets, traces, plain_too=SPLITS)
    data["meta_streams"] = np.array([f"{split}|{kind}|{len(streams)}|{sum(s.hours for s in streams):.6f}"
                                     for split, by in sets.items() for kind, streams in by.items()])
    data["labels"] = np.array(LABELS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **data)  # type: ignore[arg-type]
    print(summary(data, sets))
    print(f"{len(data['label'])} candidates -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
