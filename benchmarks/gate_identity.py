"""Everything the gate decides, dumped to JSON: to show a refactor changes nothing.

    python -m benchmarks.gate_identity dump OUT.json [--corpus DIR] [--validation-corpus DIR] [--quick]
    python -m benchmarks.gate_identity compare BEFORE.json AFTER.json [--text]

`dump` runs the real `Pipeline` (as `kws-stream detect` does) over every shared clip
(`audio/**.wav`, read by `WavFileSource`) and every stream of `benchmarks.command_mode`'s
dev and validation sets, in several modes: plain, command (event-driven, the default),
command with the model at every hop (`eager_inference`), and on the shared clips also
plain with the silence gate, command with stride 2, and command reconfigured mid-stream
(a threshold change, then a `[command]` change: a new gate). For each it records the
detections (keyword, score, start, end), every candidate command mode rejected (keyword,
score, end, the rule and the numbers its explanation measured) and the model runs.

The model's outputs are memoised by window (a hash of its MFCC), so each distinct window
goes through the model once per dump; the model-run counts are the pipeline's own.

`compare` reports every stream and mode that differs. Rejections are compared by their
rule name and the numbers measured, not by the wording of the explanation, unless
`--text` is given. One change is meant and counted apart: a window without speech above
the noise floor used to be explained as pre_silence (the old text search fell through to
it); it now names its own rule, speech_margin_db, and what it measured.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kws_stream.backend import KeywordModel
from kws_stream.command import CommandParams
from kws_stream.decision import DecisionParams
from kws_stream.detect import FileError, detect_files
from kws_stream.errors import InputError
from kws_stream.events import Detection
from kws_stream.pipeline import Pipeline, PipelineParams
from kws_stream.silence import SilenceParams

from .command_mode import AUDIO, LABELS, MODEL_FILES, SHARED, split_sets

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class MemoModel:
    """A `KeywordModel` whose outputs are memoised by window (same labels, same numbers)."""

    def __init__(self, model: KeywordModel) -> None:
        self.labels = model.labels
        self._model = model
        self._memo: dict[bytes, np.ndarray] = {}
        self.runs = 0

    def probabilities(self, window: np.ndarray) -> np.ndarray:
        key = hashlib.blake2b(np.ascontiguousarray(window).tobytes(), digest_size=16).digest()
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._model.probabilities(window)
            self.runs += 1
        return found


def rejection(d: Detection, rule: Any) -> list[Any]:
    """`rule`: a `verdicts.Reject` (its rule id), or the text `name: detail` (before issue 21)."""
    text = str(rule)
    name, _, detail = text.partition(": ")
    if hasattr(rule, "rule"):
        name = rule.rule.value
    return [d.keyword, repr(d.score), repr(d.end), name, NUMBER.findall(detail), text]


def detection(d: Detection) -> list[Any]:
    return [d.keyword, repr(d.score), repr(d.start), repr(d.end)]


MODES: dict[str, PipelineParams] = {
    "plain": PipelineParams(command=CommandParams(enabled=False)),
    "command": PipelineParams(),
    "command-eager": PipelineParams(eager_inference=True),
}
SHARED_MODES: dict[str, PipelineParams] = {
    **MODES,
    "plain-silence": PipelineParams(command=CommandParams(enabled=False), silence=SilenceParams(enabled=True)),
    "command-stride2": PipelineParams(stride=2),
}
RECONFIGURED = (  # (fraction of the stream, params from then on)
    (0.3, PipelineParams(decision=DecisionParams(threshold=0.6))),
    (0.6, PipelineParams(decision=DecisionParams(threshold=0.6), command=CommandParams(pre_silence=0.5))),
)


def run_audio(model: MemoModel, audio: np.ndarray, params: PipelineParams,
              reconfigure: Sequence[tuple[float, PipelineParams]] = ()) -> dict[str, Any]:
    pipeline = Pipeline(model, "micronet-l", "dump", params)  # type: ignore[arg-type]
    rejected: list[list[Any]] = []
    pipeline.rejection_observer = lambda d, rule: rejected.append(rejection(d, rule))
    found, at = [], 0
    for fraction, new in reconfigure:
        cut = int(len(audio) * fraction)
        found += pipeline.feed(audio[at:cut])
        pipeline.reconfigure(new)
        at = cut
    found += pipeline.feed(audio[at:])
    found += pipeline.finish()
    return {"detections": [detection(d) for d in found], "rejections": rejected, "runs": pipeline.inferences}


def run_file(model: MemoModel, path: Path, params: PipelineParams) -> dict[str, Any]:
    rejected: list[list[Any]] = []
    found: list[list[Any]] = []
    for item in detect_files([path], model, "micronet-l", params,  # type: ignore[arg-type]
                             on_rejection=lambda d, rule: rejected.append(rejection(d, rule))):
        if isinstance(item, FileError):
            found.append(["error", str(item.error)])
        else:
            found.append(detection(item))
    return {"detections": found, "rejections": rejected}


def dump(args: argparse.Namespace) -> int:
    model = MemoModel(KeywordModel(SHARED / "models" / MODEL_FILES["micronet-l"], LABELS))
    out: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    clips = sorted(AUDIO.rglob("*.wav"))
    if args.quick:
        clips = clips[::20]
    from kws_stream.sources import WavFileSource

    for path in clips:
        name = str(path.relative_to(AUDIO))
        try:
            audio = np.concatenate(list(WavFileSource(path, None).blocks()) or [np.zeros(0, np.int16)])
        except InputError as exc:
            out[f"shared:{name}"] = {"error": {"detections": [str(exc)]}}
            continue
        modes = {mode: run_audio(model, audio, params) for mode, params in SHARED_MODES.items()}
        modes["command-reconfigured"] = run_audio(model, audio, PipelineParams(), RECONFIGURED)
        modes["detect"] = run_file(model, path, PipelineParams())
        out[f"shared:{name}"] = modes
    print(f"shared clips: {len(clips)} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    for split, corpus in (("dev", args.corpus), ("val", args.validation_corpus)):
        for set_name, streams in split_sets(split, corpus).items():
            if args.quick:
                streams = streams[::25]
            for s in streams:
                out[f"{set_name}:{s.name}"] = {mode: run_audio(model, s.audio, params) for mode, params in MODES.items()}
            print(f"{set_name}: {len(streams)} streams, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    args.out.write_text(json.dumps(out, indent=0, sort_keys=True))
    print(f"{len(out)} streams, {model.runs} distinct windows through the model -> {args.out}", file=sys.stderr)
    return 0


def _strip_text(result: dict[str, Any]) -> dict[str, Any]:
    return {**result, "rejections": [r[:5] for r in result.get("rejections", [])]}


def _no_speech_fix(before: dict[str, Any], after: dict[str, Any]) -> int:
    """Rejections that differ only as issue 21 meant: before it, a window with no speech above
    the noise floor was explained as pre_silence (the text search fell through to it, and
    measured a "pause before the word" of anything: 2.84 s, 0.00 s, -0.70 s); now it names
    its own rule, speech_margin_db, with its peak less than that above the floor. Returns
    how many such rejections there are, or -1 if anything else differs."""
    a, b = before.get("rejections", []), after.get("rejections", [])
    if {k: v for k, v in before.items() if k != "rejections"} != {k: v for k, v in after.items() if k != "rejections"} \
            or len(a) != len(b):
        return -1
    fixed = 0
    for x, y in zip(a, b):
        if x[:5] == y[:5]:
            continue
        no_speech = y[3] == "speech_margin_db" and len(y[4]) == 2 and float(y[4][0]) < float(y[4][1])
        if not (x[3] == "pre_silence" and no_speech and x[:3] == y[:3]):
            return -1
        fixed += 1
    return fixed


def compare(args: argparse.Namespace) -> int:
    before, after = json.loads(args.before.read_text()), json.loads(args.after.read_text())
    differ = 0
    compared = 0
    if set(before) != set(after):
        print(f"streams only before: {sorted(set(before) - set(after))[:10]}; "
              f"only after: {sorted(set(after) - set(before))[:10]}")
        differ += 1
    counts = {"detections": 0, "rejections": 0, "runs": 0}
    renamed = 0
    for name in sorted(set(before) & set(after)):
        for mode in sorted(set(before[name]) | set(after[name])):
            a, b = before[name].get(mode, {}), after[name].get(mode, {})
            if not args.text:
                a, b = _strip_text(a), _strip_text(b)
            compared += 1
            counts["detections"] += len(a.get("detections", []))
            counts["rejections"] += len(a.get("rejections", []))
            counts["runs"] += a.get("runs", 0)
            if a != b and not args.text and (fixed := _no_speech_fix(a, b)) > 0:
                renamed += fixed
                continue
            if a != b:
                differ += 1
                if differ <= 20:
                    print(f"differs: {name} [{mode}]\n  before: {json.dumps(a)[:600]}\n  after:  {json.dumps(b)[:600]}")
    what = "with the explanations' text" if args.text else "rule names and measured numbers"
    print(f"{compared} stream x mode results compared ({what}): {counts['detections']} detections, "
          f"{counts['rejections']} rejections, {counts['runs']} model runs before; {differ} differ; "
          f"{renamed} rejections of windows without speech now name speech_margin_db, not pre_silence")
    return 1 if differ else 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out", type=Path)
    d.add_argument("--corpus", type=Path, default=Path("/tmp/kws-corpus"))
    d.add_argument("--validation-corpus", type=Path, default=Path("/tmp/kws-corpus-val"))
    d.add_argument("--quick", action="store_true", help="every 20th clip and 25th stream (a smoke run)")
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.add_argument("--text", action="store_true", help="also compare the explanations' wording")
    args = ap.parse_args(argv)
    return dump(args) if args.command == "dump" else compare(args)


if __name__ == "__main__":
    sys.exit(main())

