"""What the silence gate saves on a mostly-silent hour, and that it loses nothing.

    python -m benchmarks.silence_gate [--minutes 60] [--corpus /tmp/kws-corpus] [--markdown OUT]

- CPU: the real Pipeline in plain mode (command mode off: command mode runs the model
  only around bursts of speech and has no silence gate) over an hour of quiet room tone
  (the shared noise recording at -60 dBFS) with a keyword clip every minute, gate off
  and on; process CPU time, inferences run and skipped. A bare loop of the MFCC alone
  is the floor the gate can approach.
- Recall: detections with the gate on equal those with it off, on the shared keyword
  clips and on the synthetic keyword set (each clip in 1.5 s of low noise).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from kws_stream.backend import KeywordModel
from kws_stream.command import CommandParams
from kws_stream.detect import FileError, detect_files
from kws_stream.features import MICRONET
from kws_stream.models import default_model_dir, load_manifest, resolve
from kws_stream.pipeline import Pipeline, PipelineParams
from kws_stream.silence import SilenceParams
from testsupport.audio import AUDIO, ROOM_TONE_DBFS, SHARED, read_wav, room_tone

RATE = MICRONET.sample_rate
BLOCK = MICRONET.hop_samples * 5  # 100 ms, as the file source delivers
GATE = SilenceParams(enabled=True, floor_dbfs=-50.0)
PLAIN = CommandParams(enabled=False)  # the silence gate is a plain-mode setting


def mostly_silent_stream(minutes: float) -> list[np.ndarray]:
    """One-minute pieces: a keyword clip then room tone to the end of the minute."""
    clips = [read_wav(p) for p in sorted((AUDIO / "keywords").glob("*.wav"))]
    pieces = []
    for i in range(int(minutes)):
        clip = clips[i % len(clips)]
        pieces.append(np.concatenate([clip, room_tone(60.0 - len(clip) / RATE)]))
    return pieces


def run(model: KeywordModel, pieces: list[np.ndarray], silence: SilenceParams) -> tuple[list, float, Pipeline]:
    pipeline = Pipeline(model, "m", "bench", PipelineParams(silence=silence, command=PLAIN))
    found = []
    cpu = time.process_time()
    for piece in pieces:
        for i in range(0, len(piece), BLOCK):
            found += pipeline.feed(piece[i : i + BLOCK])
    found += pipeline.finish()
    return [(d.keyword, round(d.end, 2)) for d in found], time.process_time() - cpu, pipeline


def detections_per_file(model: KeywordModel, files: list[Path], silence: SilenceParams) -> list[list[str]]:
    """Each file's keywords, as `kws-stream detect` finds them."""
    out: dict[str, list[str]] = {str(f): [] for f in files}
    for found in detect_files(files, model, "m", PipelineParams(silence=silence, command=PLAIN)):
        if isinstance(found, FileError):
            raise SystemExit(f"silence_gate: {found.error}")
        out[found.source].append(found.keyword)
    return list(out.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--corpus", type=Path, default=Path("/tmp/kws-corpus"))
    ap.add_argument("--model", default="micronet-l")
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)

    spec, path = resolve(args.model, default_model_dir(), load_manifest(), str(SHARED / "models"), progress=False)
    model = KeywordModel(path, spec.labels)
    pieces = mostly_silent_stream(args.minutes)
    audio_s = sum(len(p) for p in pieces) / RATE
    off, cpu_off, p_off = run(model, pieces, SilenceParams())
    on, cpu_on, p_on = run(model, pieces, GATE)
    if p_on.silence is None:
        raise SystemExit("silence_gate: the pipeline built no silence gate (it needs plain mode)")

    files = sorted((AUDIO / "keywords").glob("*.wav"))
    synthetic = sorted((args.corpus / "keywords").glob("*/*.wav"))
    if not synthetic:
        print(f"(no synthetic set in {args.corpus}: build it with python -m benchmarks.corpus {args.corpus})",
              file=sys.stderr)
    shared_same = detections_per_file(model, files, SilenceParams()) == detections_per_file(model, files, GATE)
    synth_off = detections_per_file(model, synthetic, SilenceParams())
    synth_on = detections_per_file(model, synthetic, GATE)
    synth_found = sum(f == [p.parent.name] for f, p in zip(synth_on, synthetic, strict=True))

    rows = [
        ("audio", f"{audio_s / 60:.0f} min, a keyword clip every minute, room tone at {ROOM_TONE_DBFS:.0f} dBFS"),
        ("CPU gate off", f"{cpu_off:.1f} s ({cpu_off / audio_s * 1e3:.2f} ms per s of audio), "
                         f"{p_off.inferences} inferences"),
        ("CPU gate on", f"{cpu_on:.1f} s ({cpu_on / audio_s * 1e3:.2f} ms per s of audio), "
                        f"{p_on.inferences} inferences, {p_on.silence.skipped} skipped"),
        ("CPU saved", f"{(1 - cpu_on / cpu_off) * 100:.0f} % (gate on / off = {cpu_on / cpu_off:.2f})"),
        ("hour stream detections", f"identical: {on == off} ({len(on)} with the gate, {len(off)} without)"),
        ("shared keyword clips", f"identical detections: {shared_same}"),
        ("synthetic keyword set", f"identical detections: {synth_on == synth_off}; "
                                  f"{synth_found}/{len(synthetic)} clips exactly right with the gate"),
    ]
    text = "\n".join(["| measure | result |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows])
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
