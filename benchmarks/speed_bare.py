"""The bare baseline (the least work for the same decisions) and the real Pipeline run the same way."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

import kws_stream  # noqa: F401  (pins OPENBLAS/OMP/MKL threads before numpy is imported)
from kws_stream.backend import KeywordModel, native_stderr_silenced
from kws_stream.command import CommandGate, CommandParams
from kws_stream.decision import RELEASE_FRACTION, Decision
from kws_stream.events import Detection
from kws_stream.features import MICRONET, MfccExtractor
from kws_stream.pipeline import Pipeline, PipelineParams
from kws_stream.silence import SilenceGate

from .speed_common import BLOCK, RATE

HOP, FRAME, NUM_FRAMES = MICRONET.hop_samples, MICRONET.frame_samples, MICRONET.frames


class BareModel:
    """The interpreter, used directly: nothing between the loop and `invoke`."""

    def __init__(self, path: Path, labels: tuple[str, ...]) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # 32-bit Pi OS
            from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found,no-redef]
        with native_stderr_silenced():
            self.interpreter = Interpreter(model_path=str(path), num_threads=1)
            self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()[0]
        out = self.interpreter.get_output_details()[0]
        self.labels = labels
        self.input_index, self.output_index = inp["index"], out["index"]
        self.input_scale, self.input_zero_point = (float(v) for v in inp["quantization"])
        self.output_scale, self.output_zero_point = (float(v) for v in out["quantization"])


def command_params(params: PipelineParams) -> CommandParams | None:
    """The command-mode settings of these params when command mode is on, else None."""
    return params.command if params.command.enabled else None


def plain(params: PipelineParams) -> PipelineParams:
    """The same params with command mode off (plain spotting)."""
    return dataclasses.replace(params, command=dataclasses.replace(params.command, enabled=False))


def make_command_gate(params: PipelineParams, labels: tuple[str, ...]) -> CommandGate | None:
    """The real CommandGate as the Pipeline builds it, or None when command mode is off."""
    command = command_params(params)
    if command is None:
        return None
    return CommandGate(command, labels, params.decision, stride=params.stride)


def bare_run(audio: np.ndarray, model: BareModel, extractor: MfccExtractor, params: PipelineParams,
             paced_block: int = 0) -> tuple[list[tuple[str, float, int]], int]:
    """The bare loop over a whole int16 stream: (decisions as (keyword, score, end_sample), inferences).

    Per hop one new MFCC frame into a preallocated array (a window is a contiguous
    slice of it); per inference one interpreter call, softmax, and the decision rule
    inline. When the params turn on command mode (or the silence gate), each hop and
    each candidate also go through the real `CommandGate` (`SilenceGate`), as in the
    Pipeline: those rules are too long to inline, and the decisions must be the same.

    `paced_block` > 0 (a diagnostic, not the baseline): the audio "arrives" in real time in
    blocks of that many samples, and the loop sleeps until each block is due, like a live
    spotter woken by its microphone.
    """
    stride, decision = params.stride, params.decision
    labels = model.labels
    gate = make_command_gate(params, labels)
    silence = SilenceGate(params.silence, NUM_FRAMES) if params.silence.enabled else None
    n_classes = len(labels)
    n_frames = max(0, (len(audio) - FRAME) // HOP + 1)
    feats = np.empty((n_frames, MICRONET.coefficients))
    frame_mfcc = extractor.frame
    interp = model.interpreter
    set_tensor, invoke, get_tensor = interp.set_tensor, interp.invoke, interp.get_tensor
    in_idx, out_idx = model.input_index, model.output_index
    in_scale, in_zp = model.input_scale, model.input_zero_point
    out_scale, out_zp = model.output_scale, model.output_zero_point
    smoothing = max(1, decision.smoothing)
    history = np.zeros((smoothing, n_classes), dtype=np.float32)
    thresholds = np.array([decision.threshold_for(label) for label in labels])
    release = thresholds * RELEASE_FRACTION
    reportable = [label not in ("_silence_", "_unknown_") and (decision.keywords is None or label in decision.keywords)
                  for label in labels]
    armed = np.ones(n_classes, dtype=bool)
    last_fired: list[int | None] = [None] * n_classes
    refractory = decision.refractory * RATE
    decisions: list[tuple[str, float, int]] = []
    filled = 0
    inferences = 0
    evaluated = -1
    smoothed = None

    def infer(f: int) -> list[Decision]:  # f: index of the newest frame
        nonlocal filled, inferences, evaluated, smoothed
        evaluated = f
        inferences += 1
        q = np.clip(np.round(feats[f - NUM_FRAMES + 1 : f + 1] / in_scale) + in_zp, -128, 127)
        set_tensor(in_idx, q.astype(np.int8).reshape(MICRONET.input_shape))
        invoke()
        logits = (get_tensor(out_idx)[0].astype(np.float32) - out_zp) * out_scale
        e = np.exp(logits - logits.max())
        history[filled % smoothing] = e / e.sum()
        filled += 1
        smoothed = history[: min(filled, smoothing)].mean(axis=0)
        armed[smoothed < release] = True
        top = int(smoothed.argmax())
        score = float(smoothed[top])
        if reportable[top] and armed[top] and score >= thresholds[top]:
            end = f * HOP + FRAME
            last = last_fired[top]
            if last is None or end - last >= refractory:
                armed[top] = False
                last_fired[top] = end
                return [Decision(labels[top], score, end)]
        return []

    t0 = time.monotonic()
    for f in range(n_frames):
        start = f * HOP
        if paced_block:  # wait for the block that completes this frame
            due = t0 + -(-(start + FRAME) // paced_block) * paced_block / RATE
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
        feats[f] = frame_mfcc(audio[start : start + FRAME])
        run = f >= NUM_FRAMES - 1 and (f - NUM_FRAMES + 1) % stride == 0
        if silence is not None and not silence.push(audio[start + FRAME - HOP : start + FRAME]):
            if run:
                filled = 0  # the decider forgets its smoothing history
            run = False
        fired = infer(f) if run else []
        if gate is not None:
            newest = audio[start + FRAME - HOP : start + FRAME]
            fired = gate.push(newest, start + FRAME, fired, smoothed if run else None)
        decisions.extend((d.keyword, d.score, d.end_sample) for d in fired)
    # The end of the stream, like Pipeline.finish(): the last window if the stride skipped it.
    last = n_frames >= NUM_FRAMES and evaluated != n_frames - 1 and (silence is None or silence.active)
    fired = infer(n_frames - 1) if last else []
    if gate is not None:
        fired = gate.finish(fired, smoothed if last else None)
    decisions.extend((d.keyword, d.score, d.end_sample) for d in fired)
    return decisions, inferences


def pipeline_run(audio: np.ndarray, model: KeywordModel, name: str, params: PipelineParams,
                 block: int = BLOCK) -> tuple[list[Detection], int]:
    """The real Pipeline over a stream in `block`-sample blocks, as the daemon feeds it."""
    pipeline = Pipeline(model, name, "bench", params)
    found: list[Detection] = []
    for start in range(0, len(audio), block):
        found.extend(pipeline.feed(audio[start : start + block]))
    found.extend(pipeline.finish())
    return found, pipeline.inferences
