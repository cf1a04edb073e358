"""Does the second judge depend on the schedule? `detect` (command mode event-driven) against
`detect --explain` (the model at every hop, so the rules often decide sooner) on WAV files.

For every file both are run with the judge; where they report different keywords (or times),
both are run again without it, to tell the judge's differences from the rules' own (issue 22,
item 4: the event-driven rules can decide differently at a stream's start; not the judge's).

    python -m benchmarks.judge_schedule [FILES...]   # default: every WAV under shared/audio
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from benchmarks.command_mode import LABELS, SHARED
from kws_stream.backend import KeywordModel
from kws_stream.judge import Judge, load_judge
from kws_stream.pipeline import Pipeline, PipelineParams
from testsupport.audio import read_wav

BLOCK = 1600  # 0.1 s, as `detect` reads


def reported(model: KeywordModel, x: np.ndarray, judge: Judge | None, eager: bool) -> list[tuple[str, float]]:
    params = dataclasses.replace(PipelineParams(), eager_inference=eager)
    p = Pipeline(model, "micronet-l", "x", params, judge=judge)
    found = [d for i in range(0, len(x), BLOCK) for d in p.feed(x[i:i + BLOCK])] + p.finish()
    return [(d.keyword, round(d.end, 2)) for d in found]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path)
    args = ap.parse_args(argv)
    judge = load_judge()
    if judge is None:
        print("error: the judge cannot load here (see the line above)", file=sys.stderr)
        return 2
    files = args.files or sorted((SHARED / "audio").rglob("*.wav"))
    model = KeywordModel(SHARED / "models" / "kws_micronet_l.tflite", LABELS)
    judge_diff = rules_diff = 0
    for f in files:
        x = read_wav(f)
        event, every_hop = reported(model, x, judge, False), reported(model, x, judge, True)
        if event == every_hop:
            continue
        alone = reported(model, x, None, False), reported(model, x, None, True)
        if alone[0] != alone[1]:
            rules_diff += 1
            print(f"rules differ: {f}: detect {alone[0]} / --explain {alone[1]}; with the judge {event} / {every_hop}")
        else:
            judge_diff += 1
            print(f"JUDGE differs: {f}: detect {event} / --explain {every_hop}; rules alone {alone[0]}")
    print(f"{len(files)} files: detect != detect --explain on {judge_diff + rules_diff} "
          f"({judge_diff} by the judge, {rules_diff} where the rules alone differ already)")
    return 1 if judge_diff else 0


if __name__ == "__main__":
    sys.exit(main())
