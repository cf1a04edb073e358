"""What a second judge can look at, per candidate of `benchmarks.judge_data`:

* `oww`: openWakeWord's speech embedding SEQUENCE over `seconds` of the candidate's audio ending
  `after` seconds after the window that fired (its melspectrogram.tflite, then embedding_model.tflite on 76-frame (775 ms)
  windows every 8 frames (80 ms), batched in one call): (T, 96);
* `micronet`: MicroNet-L's own 248-dimensional average-pooled activation (the layer before
  its classifier) for the window that fired, read with `experimental_preserve_all_tensors`.

Both cached to /work/judge-cache next to the candidates.

    python -m benchmarks.judge_features [--seconds 1.5] [--after 0]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from kws_stream.features import MICRONET, FeatureParams, MfccExtractor
from kws_stream.judge import AFTER_WINDOW_S, embedding_models
from testsupport.audio import SHARED

MEL_FRAMES, EMB_STEP, EMB_DIM = 76, 8, 96


def _interpreter(path: Path, preserve: bool = False):
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Interpreter(model_path=str(path), num_threads=1, experimental_preserve_all_tensors=preserve)


class OwwEmbedder:
    """audio (int16) -> openWakeWord embeddings (T, 96), as openWakeWord computes them."""

    def __init__(self) -> None:
        folder = embedding_models()
        if folder is None:
            raise SystemExit("error: pyopen-wakeword is not installed: pip install -e '.[bench]'")
        self.mel = _interpreter(folder / "melspectrogram.tflite")
        self.emb = _interpreter(folder / "embedding_model.tflite")
        self._mel_n = self._emb_n = -1

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        if len(audio) != self._mel_n:
            self.mel.resize_tensor_input(0, (1, len(audio)))
            self.mel.allocate_tensors()
            self._mel_n = len(audio)
        self.mel.set_tensor(self.mel.get_input_details()[0]["index"], audio.astype(np.float32)[None])
        self.mel.invoke()
        spec = self.mel.get_tensor(self.mel.get_output_details()[0]["index"])[0, 0] / 10.0 + 2.0  # (F, 32)
        starts = range(0, len(spec) - MEL_FRAMES + 1, EMB_STEP)
        batch = np.stack([spec[s:s + MEL_FRAMES] for s in starts])[..., None].astype(np.float32)
        if len(batch) != self._emb_n:
            self.emb.resize_tensor_input(0, batch.shape)
            self.emb.allocate_tensors()
            self._emb_n = len(batch)
        self.emb.set_tensor(self.emb.get_input_details()[0]["index"], batch)
        self.emb.invoke()
        return self.emb.get_tensor(self.emb.get_output_details()[0]["index"]).reshape(len(batch), EMB_DIM)


class MicroNetActivations:
    """MFCC window -> MicroNet's pooled activation (248,), dequantised."""

    def __init__(self, model: Path) -> None:
        self.it = _interpreter(model, preserve=True)
        self.it.allocate_tensors()
        details = self.it.get_tensor_details()
        self.pool = next(d for d in details if d["name"].startswith("AvgPool"))
        self.inp = self.it.get_input_details()[0]
        self.mfcc = MfccExtractor(FeatureParams())

    def __call__(self, window: np.ndarray) -> np.ndarray:
        """`window`: the int16 samples of one model window (MICRONET.window_samples)."""
        p = FeatureParams()
        n = (len(window) - p.frame_length) // p.frame_step + 1
        idx = np.arange(n)[:, None] * p.frame_step + np.arange(p.frame_length)
        feats = self.mfcc.frames(window[idx])[-MICRONET.frames:]
        scale, zero = self.inp["quantization"]
        q = np.clip(np.round(feats / scale + zero), -128, 127).astype(np.int8).reshape(self.inp["shape"])
        self.it.set_tensor(self.inp["index"], q)
        self.it.invoke()
        scale, zero = self.pool["quantization"]
        return (self.it.get_tensor(self.pool["index"]).reshape(-1).astype(np.float32) - zero) * scale


def judged_span(audio: np.ndarray, anchor: float, window_end: float, previous: float, seconds: float,
                after: float, mask: bool) -> np.ndarray:
    """What the judge hears of a candidate's segment (ending at `anchor`, s): `seconds` ending
    `after` past its window; with `mask`, zeros before the previous word's window end (a row)."""
    rate = MICRONET.sample_rate
    n = int(round(seconds * rate))
    cut = len(audio) - int(round((anchor - window_end - after) * rate))  # the span's end in the segment
    span = audio[cut - n:cut].copy()
    if mask and previous > anchor - len(audio) / rate:  # the row's previous word is in the segment
        span[:max(0, min(n, n - int(round((window_end + after - previous) * rate))))] = 0
    return span


def features_name(seconds: float, after: float, mask: bool = False) -> str:
    return f"features_{seconds:g}s_{after:g}after{'_masked' if mask else ''}.npz"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/judge-cache/candidates.npz"))
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--after", type=float, default=AFTER_WINDOW_S, help="the span ends this long after the window")
    ap.add_argument("--mask", action=argparse.BooleanOptionalAction, default=True,
                    help="zeros before the previous decision's window end (a row)")
    args = ap.parse_args(argv)
    d = np.load(args.data)
    rate = MICRONET.sample_rate
    oww = OwwEmbedder()
    net = MicroNetActivations(SHARED / "models" / "kws_micronet_l.tflite")
    seqs, acts, cpu = [], [], []
    win = MICRONET.window_samples
    for audio, anchor, we, previous in zip(d["audio"], d["anchor"], d["window_end"], d["previous"]):
        t0 = time.process_time()
        seqs.append(oww(judged_span(audio, anchor, we, previous, args.seconds, args.after, args.mask)))
        cpu.append(time.process_time() - t0)
        end = len(audio) - int(round((anchor - we) * rate))
        acts.append(net(np.concatenate([np.zeros(win, np.int16), audio])[end:end + win]))
    out = args.data.with_name(features_name(args.seconds, args.after, args.mask))
    np.savez_compressed(out, oww=np.stack(seqs), micronet=np.stack(acts), oww_cpu=np.array(cpu))
    print(f"{len(seqs)} candidates, oww {seqs[0].shape}, CPU per candidate: median {np.median(cpu) * 1e3:.1f} ms, "
          f"p95 {np.percentile(cpu, 95) * 1e3:.1f} ms -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
