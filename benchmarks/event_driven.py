"""Event-driven command mode against the model at every hop: same detections, fewer model runs.

    python -m benchmarks.event_driven [--corpus DIR] [--validation-corpus DIR] [--eager-cache FILE]

Runs the real `Pipeline` twice over every stream of `benchmarks.command_mode`'s dev and
validation sets (real running speech from real-dev, synthetic prose, real speech as a TV
alone, keyword clips padded, with a TV 20 dB below, and in a row after 1-60 s of quiet;
the validation side also the shared keyword clips): once with `eager_inference=True` (the
model at every hop, as command mode ran before it became event-driven) and once at the
defaults. It prints, per set, the audio, the model runs of each and their ratio, and every
stream whose detections (keyword and window end) differ, with both lists. The every-hop
results are cached in `--eager-cache`, keyed on everything they depend on: the model file,
the code of `kws_stream` (the gate's rules, the front end), the parameters and each
stream's audio; a change to any of them computes them again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import kws_stream
from kws_stream.backend import KeywordModel
from kws_stream.features import MICRONET
from kws_stream.pipeline import Pipeline, PipelineParams

from .command_mode import LABELS, MODEL_FILES, SHARED, split_sets

RATE = MICRONET.sample_rate
EAGER = PipelineParams(eager_inference=True)


def fingerprint(model_path: Path) -> str:
    """What every-hop results depend on besides the audio: the model, the code, the params."""
    h = hashlib.sha1(model_path.read_bytes())
    for source in sorted(Path(kws_stream.__file__).parent.glob("*.py")):
        h.update(source.name.encode() + source.read_bytes())
    h.update(repr(EAGER).encode())
    return h.hexdigest()


def detections(model: KeywordModel, audio, eager: bool) -> tuple[list[list], int]:
    pipeline = Pipeline(model, "micronet-l", "bench", EAGER if eager else PipelineParams())
    found = pipeline.feed(audio) + pipeline.finish()
    return [[d.keyword, round(d.end, 2)] for d in found], pipeline.inferences


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path("/tmp/kws-corpus"))
    ap.add_argument("--validation-corpus", type=Path, default=Path("/tmp/kws-corpus-val"))
    ap.add_argument("--model", choices=sorted(MODEL_FILES), default="micronet-l")
    ap.add_argument("--eager-cache", type=Path, default=Path("/tmp/kws-event-driven-eager.json"))
    args = ap.parse_args(argv)
    model_path = SHARED / "models" / MODEL_FILES[args.model]
    model = KeywordModel(model_path, LABELS)
    version = fingerprint(model_path)
    cache = json.loads(args.eager_cache.read_text()) if args.eager_cache.exists() else {}
    if cache.get("fingerprint") != version:
        cache = {"fingerprint": version}  # another model, gate or front end: nothing cached holds
    print(f"{'set':28s} {'audio_s':>8s} {'every-hop runs':>14s} {'event runs':>10s} {'ratio':>7s} {'differ':>6s}")
    totals = [0.0, 0, 0, 0, 0]
    differences = []
    for split, corpus in (("dev", args.corpus), ("val", args.validation_corpus)):
        for name, streams in split_sets(split, corpus).items():
            row = [0.0, 0, 0, 0, len(streams)]
            for s in streams:
                key = f"{s.name}:{hashlib.sha1(s.audio.tobytes()).hexdigest()}"
                if key not in cache:
                    found, runs = detections(model, s.audio, eager=True)
                    cache[key] = {"dets": found, "inf": runs}
                found, runs = detections(model, s.audio, eager=False)
                row[0] += len(s.audio) / RATE
                row[1] += cache[key]["inf"]
                row[2] += runs
                if found != cache[key]["dets"]:
                    row[3] += 1
                    differences.append((s.name, cache[key]["dets"], found))
            args.eager_cache.write_text(json.dumps(cache))
            print(f"{name:28s} {row[0]:8.0f} {row[1]:14d} {row[2]:10d} {row[1] / max(1, row[2]):6.1f}x "
                  f"{row[3]:3d}/{row[4]}", flush=True)
            totals = [a + b for a, b in zip(totals, row)]
    print(f"{'all':28s} {totals[0]:8.0f} {totals[1]:14d} {totals[2]:10d} {totals[1] / max(1, totals[2]):6.1f}x "
          f"{totals[3]:3d}/{totals[4]}")
    for name, eager, event in differences:
        print(f"differs: {name}\n  every hop: {eager}\n  event:     {event}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
