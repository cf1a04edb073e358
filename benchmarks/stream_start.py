"""Command mode at the start of a stream (issue 22, item 4 and the recall target): which real
keyword recordings plain mode finds and command mode loses, and the rule that lost each.

For one side of `benchmarks.judge_data`'s split, `real-keywords/` three ways: in 0.5 s of room
tone, as recorded (the word near the stream's start), and with the lead-in quiet cut by
`sox in.wav out.wav silence 1 0.01 1%` (the word at 0.0 s). Each through plain mode, command
mode event-driven (the default) and command mode with the model at every hop (what
`detect --explain` runs), replayed over cached MicroNet-L traces (`command_mode.replay`: the
pipeline's own `Spotter`). A clip is found when a detection names its keyword.

False accepts beside it, where the stream start matters most: every `real-dev` recording of
the split alone (its first word is the stream's first), `custom-words/` as recorded and in
room tone (command-shaped non-keywords), and the split's real-dev speech gapped as
`--targets` measures it.

    python -m benchmarks.stream_start [--split dev] [--list] [--corpus /tmp/kws-corpus]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.command_mode import LABELS, RATE, Stream, real_dev_split, split_sets, traces_for
from benchmarks.judge_data import custom_words, real_keywords, real_keywords_split
from kws_stream.command import CommandParams
from kws_stream.decision import DecisionParams
from kws_stream.features import MICRONET
from kws_stream.pipeline import PipelineParams, Spotter
from testsupport.audio import read_wav

CACHE = Path("/tmp/kws-command-cache")
MODES = ("plain", "event", "every hop")


def sox_trimmed(path: Path, out_dir: Path) -> np.ndarray:
    """The clip with its lead-in quiet cut as the issue cuts it (sox), read as `detect` reads it."""
    out = out_dir / path.name
    if not out.exists():
        subprocess.run(["sox", str(path), str(out), "silence", "1", "0.01", "1%"], check=True)
    return read_wav(out)


def as_fed(x: np.ndarray) -> np.ndarray:
    """A stream shorter than a window padded with zeros to one, as `Pipeline.finish` does."""
    n = MICRONET.window_samples
    return np.concatenate([x, np.zeros(n - len(x), dtype=np.int16)]) if len(x) < n else x


def trimmed_keywords(split: str, out_dir: Path) -> list[Stream]:
    return [Stream(f"{split}:realkw-trim:{f.name}", as_fed(sox_trimmed(f, out_dir)),
                   [(f.stem.split("_")[0], math.nan)]) for f in real_keywords_split(split)]


def real_dev_alone(split: str) -> list[Stream]:
    """Every real-dev recording of the split as its own stream: its first word is the stream's."""
    return [Stream(f"{split}:alone:{p.name}", read_wav(p)) for p in real_dev_split(split)]


def spot(trace, mode: str, command: CommandParams) -> tuple[list[tuple[str, float]], list[str]]:
    """(keyword, window end s) reported, and each rejection as `--explain` words it."""
    params = CommandParams(enabled=False) if mode == "plain" else command
    spotter = Spotter(LABELS, PipelineParams(decision=DecisionParams(), command=params,
                                             eager_inference=mode == "every hop"), lambda k: trace.probs[k + 1])
    found = []
    hop_s = MICRONET.hop_seconds
    for k in range(len(trace.levels) - 1):
        found += [(d.keyword, d.end_sample / RATE) for d in spotter.hop(k, float(trace.levels[k + 1]))]
    found += [(d.keyword, d.end_sample / RATE) for d in spotter.finish()]
    # the spotter's hop k is samples 320 (k + 1) .. 320 (k + 2) of the stream (`command_mode.replay`)
    rejected = [f"{d.keyword}@{d.end_sample / RATE:.2f}s {r} [burst {(r.burst.start + 1) * hop_s:.2f}-"
                f"{(r.burst.end + 2) * hop_s:.2f} s]" for d, r in spotter.rejections]
    return found, rejected


def measure(streams: dict[str, list[Stream]], command: CommandParams, show: bool) -> dict[str, dict[str, int]]:
    traces = traces_for(streams, "micronet-l", CACHE)
    counts: dict[str, dict[str, int]] = {}
    for kind, items in streams.items():
        row = counts[kind] = Counter()
        negative = not items[0].words
        for s in items:
            got = {}
            for mode in MODES:
                found, rejected = spot(traces[s.name], mode, command)
                hit = any(kw == w for kw, _ in found for w, _ in s.words)
                row[mode] += len(found) if negative else hit
                if not negative:  # reports naming another keyword than the clip's
                    row[f"{mode} wrong"] += sum(all(kw != w for w, _ in s.words) for kw, _ in found)
                got[mode] = (hit, found, rejected)
            if show and not negative and got["plain"][0] and not got["event"][0]:
                print(f"  LOST {s.name}: plain {got['plain'][1]}")
                for mode in ("event", "every hop"):
                    print(f"     {mode}: found {got[mode][1]}; rejected {got[mode][2]}")
            if show and negative and got["event"][1]:
                print(f"  FA {s.name}: event {got['event'][1]} every hop {got['every hop'][1]}")
            if got["event"][0] != got["every hop"][0] or (negative and got["event"][1] != got["every hop"][1]):
                row["event != every hop"] += 1
                if show:
                    print(f"  DIFF {s.name}: event {got['event'][1]} every hop {got['every hop'][1]}")
        counts[kind] = dict(row)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", choices=("dev", "val"), default="dev")
    ap.add_argument("--corpus", type=Path, default=Path("/tmp/kws-corpus"))
    ap.add_argument("--list", action="store_true", help="list every loss (with the rules' verdicts) and FA")
    ap.add_argument("--only", nargs="*", help="measure only these kinds")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="[command] settings to measure instead of the defaults (min_snr_db=15)")
    args = ap.parse_args(argv)
    split = args.split
    trim_dir = Path(tempfile.gettempdir()) / "kws-trimmed"
    trim_dir.mkdir(exist_ok=True)
    streams = {
        "real-keywords in room tone": real_keywords(split),
        "real-keywords as recorded": real_keywords(split, pad=False),
        "real-keywords sox-trimmed": trimmed_keywords(split, trim_dir),
        "custom-words in room tone": custom_words(split),
        "custom-words as recorded": custom_words(split, pad=False),
        "real-dev recordings alone": real_dev_alone(split),
        "real-dev speech gapped": split_sets(split, args.corpus)[f"{split}:real_speech"],
    }
    if args.only:
        streams = {k: v for k, v in streams.items() if any(o in k for o in args.only)}
    for items in streams.values():
        for s in items:
            s.audio = as_fed(s.audio)
    command = CommandParams(**{k: float(v) for k, v in (kv.split("=", 1) for kv in args.set)})
    counts = measure(streams, command, args.list)
    print(f"{split}, {command}")
    print(f"{split}: {'set':30} {'n':>5} " + " ".join(f"{m:>14}" for m in MODES) + "  event != every hop")
    for kind, row in counts.items():
        n = len(streams[kind])
        cells = [f"{row.get(m, 0)}" + ("" if not streams[kind][0].words else f" (+{row.get(m + ' wrong', 0)})")
                 for m in MODES]
        print(f"{split}: {kind:30} {n:>5} " + " ".join(f"{c:>14}" for c in cells)
              + f"  {row.get('event != every hop', 0):>5}")
    print("(keywords: clips found (+ reports of another keyword); others: false accepts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
