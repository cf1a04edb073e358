"""Speed and memory of kws-stream, measured against a bare baseline in the same run.

    python -m benchmarks.speed [--quick] [--json OUT] [--markdown OUT] [--corpus DIR]

These machines are shared and noisy, so every CPU figure is also given as a ratio to
the *bare baseline*: the least work that produces the same decisions. A plain loop
that per 20 ms hop computes only the new MFCC frame (`MfccExtractor.frame`, the exact
front end) and per inference calls the interpreter once (ai-edge-litert directly,
one thread: quantise, set_tensor, invoke, get_tensor, dequantise, softmax), then
the same smoothing/threshold/refractory rule as `KeywordDecider`, inline; when the
defaults turn on command mode, each hop also goes through the real `CommandGate` (its
rule is too long to inline; `bare_plain` is the loop without it). No generators,
ring, threads, queues or sinks. Its decisions equal the real Pipeline's (tested).

Sections (each timed with process CPU time, never wall time, unless it says wall):

- bare: CPU us per second of audio at strides 1, 2, 4, 8 over a stream built from the
  shared keyword clips, negatives and noise (60 s; `--quick`: 12 s, the whole run about
  a minute); measured before
  and after the live phases, median of all repeats;
- pipeline: the real `Pipeline.feed` in-process on the same stream in capture blocks of the
  default size (`[audio] block_ms`, 100 ms), as the daemon feeds it;
- stages: capture callback copy (`CaptureSession.callback` -> `RingBuffer.write`), ring
  read, MFCC (`FeatureWindow.push` per hop), inference (`KeywordModel.probabilities`),
  decision (`KeywordDecider.update`), sinks (`StdoutSink.handle` to /dev/null, and the
  same through the `EventBus`); us per second of audio;
- daemon: the real `kws-stream run` fed in real time through the PulseAudio virtual
  microphone (tests/vmic.py); utime+stime of its PID from /proc between two samples
  taken after warm-up, per second of audio, and the ratio to the bare loop with the same
  decisions; also per thread (names from `py-spy dump` when installed), with command mode
  off, at strides 2/4/8, and with 20 and 50 ms capture blocks (the default is 100 ms); a
  diagnostic `bare_paced` runs the bare loop in real time (sleeping until each 20 / 50 /
  100 ms block is due) to separate the cost of waking up every block (cold caches, timer
  wake-ups) from the daemon's own overhead: the daemon is also compared with the bare
  loop paced at its own block size;
- idle: CPU % of one core and peak RSS (VmHWM) of that daemon over silence and speech,
  and what each import adds to a fresh interpreter's RSS;
- latency: keyword commands from the synthetic corpus (`--corpus`, built if missing; 40
  clips over 10 voices, each followed by 1.2 s of noise at the clip's own noise level),
  played through the virtual microphone to the default daemon (command mode) and to one
  with `[command] enabled = false` (plain); from the true end of the word (keywords.csv
  `word_end_s`, timed by when the feeder wrote the sample) to the moment its JSON line is
  read from the daemon's stdout; p50/p95/max, matched and missed per mode;
- file throughput: `kws-stream detect` over one hour of audio (`--quick`: 1 min),
  wall and CPU, as a multiple of real time, for micronet-l and micronet-m;
- stride trade-off: the CPU per stride from bare, pipeline and daemon, the shared clips
  spotted exactly by the real Pipeline, and `benchmarks.accuracy.stride_accuracy` (plain
  decision stage from its cached replay: shared and synthetic clip accuracy, recall,
  false accepts per hour; `--quick`: the shared clips only). Command mode is evaluated
  separately in `benchmarks.command_mode`.
"""

from __future__ import annotations

import kws_stream  # noqa: F401  (pins OPENBLAS/OMP/MKL threads before numpy is imported)

import argparse
import dataclasses
import importlib.metadata
import inspect
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from kws_stream import config as cfg
from kws_stream.backend import KeywordModel, native_stderr_silenced
from kws_stream.capture import RING_SECONDS, CaptureSession
from kws_stream.decision import RELEASE_FRACTION, Decision, KeywordDecider
from kws_stream.events import Detection, EventBus
from kws_stream.features import FeatureWindow, MfccExtractor
from kws_stream.models import default_model_dir, load_manifest, resolve
from kws_stream.pipeline import Pipeline, PipelineParams
from kws_stream.ringbuffer import RingBuffer
from kws_stream.sinks import StdoutSink
from kws_stream.sources import StreamConverter

from . import procstat

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KWS_SHARED", REPO.parent / "shared"))
AUDIO = SHARED / "audio"
RATE = 16000
HOP = 320
FRAME = 640
NUM_FRAMES = 49
DEFAULT_BLOCK_MS = cfg.AudioConfig().block_ms  # the daemon's default capture block (100 ms)
BLOCK = RATE * DEFAULT_BLOCK_MS // 1000  # samples per capture block, as the daemon feeds the Pipeline
PACED_BLOCKS_MS = (20, 50, 100)  # the paced bare-loop diagnostic
STRIDES = (1, 2, 4, 8)
MODELS = ("micronet-l", "micronet-m")
KEYWORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
TARGETS = {"daemon_ratio": 1.25, "latency_p95_ms": 200.0, "command_latency_p95_ms": 400.0, "rss_mb": 80.0}

KEYWORD_CLIPS = ("keywords/yes.wav", "keywords/down.wav", "keywords/right.wav", "keywords/yes_1000ms.wav",
                 "keywords/no_1000ms.wav", "keywords/right_left_up.wav", "keywords/yes_no_go_stop.wav")
NEGATIVE_CLIPS = ("negatives/another_door.wav", "negatives/another_engineer.wav", "negatives/i_tell_you.wav",
                  "negatives/testing_routine.wav", "negatives/marvin_617de221_0.wav",
                  "negatives/silence_1000ms.wav", "negatives/near_silence.wav", "negatives/noise_1000ms.wav")
NOISE_CLIP = "negatives/noise_1000ms.wav"


@dataclasses.dataclass(frozen=True)
class Plan:
    """How long each part runs; `--quick` is a smoke test of the whole harness."""

    quick: bool
    stream_s: float = 60.0  # audio for bare/pipeline/stages, and the speech window of the daemon
    repeats: int = 3  # bare/pipeline runs per stride, before and after the live phases each
    warmup_s: float = 3.0  # daemon: after ready, before the first CPU sample
    silence_s: float = 60.0
    speech_s: float = 60.0
    latency_keywords: int = 40  # synthetic keyword commands played live, per mode (command and plain)
    daemon_strides: tuple[int, ...] = (1, 2, 4, 8)
    block_variants: tuple[int, ...] = (20, 50)  # extra daemon runs at stride 1 with [audio] block_ms = this
    other_stride_s: float = 30.0  # speech window for the other daemons (strides > 1, blocks, plain)
    file_s: float = 3600.0
    paced_s: float = 20.0  # diagnostic: the bare loop paced in real time (20, 50 and 100 ms blocks)

    @classmethod
    def make(cls, quick: bool) -> "Plan":
        if not quick:
            return cls(quick=False)
        return cls(quick=True, stream_s=12.0, repeats=1, warmup_s=1.0, silence_s=5.0, speech_s=6.0,
                   latency_keywords=4, daemon_strides=(1,), block_variants=(), other_stride_s=3.0, file_s=60.0,
                   paced_s=3.0)


# ----------------------------------------------------------------------------- audio


def read_clip(name: str) -> np.ndarray:
    """A shared clip as 16 kHz mono int16 (stereo mixed down)."""
    import scipy.io.wavfile

    rate, data = scipy.io.wavfile.read(AUDIO / name)
    if rate != RATE:
        raise SystemExit(f"{name}: expected {RATE} Hz, got {rate}")
    if data.ndim > 1:
        data = np.round(data.astype(np.float64).mean(axis=1)).astype(np.int16)
    return np.asarray(data, dtype=np.int16)


def build_stream(seconds: float, seed: int = 0) -> np.ndarray:
    """Keyword clips and spoken negatives in random order, gain and spacing, with 0.3-1.2 s
    of room noise between them; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    clips = [read_clip(n).astype(np.float32) for n in KEYWORD_CLIPS + NEGATIVE_CLIPS]
    noise = read_clip(NOISE_CLIP).astype(np.float32)
    total = int(seconds * RATE)
    parts: list[np.ndarray] = []
    have = 0
    while have < total:
        gap = int(rng.uniform(0.3, 1.2) * RATE)
        floor = np.roll(np.resize(noise, gap), int(rng.integers(len(noise)))) * rng.uniform(0.3, 1.0)
        clip = clips[int(rng.integers(len(clips)))] * rng.uniform(0.5, 1.0)
        for part in (floor, clip):
            parts.append(part)
            have += len(part)
    audio = np.concatenate(parts)[:total]
    return np.clip(np.round(audio), -32768, 32767).astype(np.int16)


def write_wav(path: Path, audio: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        for start in range(0, len(audio), RATE * 60):  # a minute at a time keeps memory flat
            w.writeframes(audio[start : start + RATE * 60].astype("<i2").tobytes())


def expected_words(name: str) -> tuple[str, ...]:
    """Keywords a shared clip holds, from its file name (negatives hold none)."""
    if not name.startswith("keywords/"):
        return ()
    return tuple(w for w in Path(name).stem.split("_") if w in KEYWORDS)


# ----------------------------------------------------------------------------- models


def model_path(name: str) -> tuple[Path, tuple[str, ...]]:
    spec, path = resolve(name, default_model_dir(), load_manifest(), None, progress=False)
    return path, spec.labels


def default_params(stride: int | None = None) -> PipelineParams:
    """The daemon's defaults (config.py), optionally at another stride."""
    params = cfg.DetectionConfig().pipeline_params()
    return params if stride is None else dataclasses.replace(params, stride=stride)


def runtime_version() -> str:
    for dist in ("ai-edge-litert", "tflite-runtime"):
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "none"


# ----------------------------------------------------------------------------- bare baseline


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


def command_params(params: PipelineParams) -> Any:
    """The command-mode settings of these params when command mode is on, else None."""
    command = getattr(params, "command", None)
    return command if command is not None and getattr(command, "enabled", False) else None


def silence_params(params: PipelineParams) -> Any:
    """The silence-gate settings of these params when the gate is on, else None."""
    silence = getattr(params, "silence", None)
    return silence if silence is not None and getattr(silence, "enabled", False) else None


def plain(params: PipelineParams) -> PipelineParams:
    """The same params with command mode off (plain spotting), when the pipeline has one."""
    command = getattr(params, "command", None)
    if command is None:
        return params
    return dataclasses.replace(params, command=dataclasses.replace(command, enabled=False))


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    return name in inspect.signature(fn).parameters


def make_command_gate(params: PipelineParams, labels: tuple[str, ...]) -> Any:
    """The real CommandGate as the Pipeline builds it, or None when command mode is off."""
    command = command_params(params)
    if command is None:
        return None
    from kws_stream.command import CommandGate

    window = FRAME + (NUM_FRAMES - 1) * HOP
    if _accepts(CommandGate, "labels"):  # the gate re-scores whole words from smoothed scores
        return CommandGate(command, RATE, window, labels, params.decision)
    return CommandGate(command, RATE, window)


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
    gate_takes_scores = gate is not None and _accepts(gate.push, "probabilities")
    silence = None
    if silence_params(params) is not None:
        from kws_stream.silence import SilenceGate

        silence = SilenceGate(silence_params(params), NUM_FRAMES)
    n_classes = len(labels)
    n_frames = max(0, (len(audio) - FRAME) // HOP + 1)
    feats = np.empty((n_frames, 10))
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
        set_tensor(in_idx, q.astype(np.int8).reshape(1, NUM_FRAMES, 10, 1))
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
            if gate_takes_scores:
                fired = gate.push(newest, start + FRAME, fired, smoothed if run else None)
            else:
                fired = gate.push(newest, start + FRAME, fired)
        decisions.extend((d.keyword, d.score, d.end_sample) for d in fired)
    # The end of the stream, like Pipeline.finish(): the last window if the stride skipped it.
    last = n_frames >= NUM_FRAMES and evaluated != n_frames - 1 and (silence is None or silence.active)
    fired = infer(n_frames - 1) if last else []
    if gate is not None:
        fired = gate.finish(fired, smoothed if last else None) if gate_takes_scores else gate.finish(fired)
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


def cpu_timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(process CPU seconds, result) of one call."""
    t0 = time.process_time()
    result = fn()
    return time.process_time() - t0, result


def summarise(samples_s: Sequence[float], audio_s: float) -> dict[str, Any]:
    """CPU seconds of repeated runs over `audio_s` of audio -> us per second of audio."""
    per_s = [1e6 * s / audio_s for s in samples_s]
    return {"us_per_s": statistics.median(per_s), "min_us_per_s": min(per_s), "max_us_per_s": max(per_s),
            "runs": len(per_s)}


# ----------------------------------------------------------------------------- in-process sections


class InProcess:
    """Bare loop, Pipeline and per-stage costs on one stream, all in this process."""

    def __init__(self, audio: np.ndarray, model_name: str = "micronet-l") -> None:
        self.audio = audio
        self.audio_s = len(audio) / RATE
        self.model_name = model_name
        path, labels = model_path(model_name)
        self.bare_model = BareModel(path, labels)
        self.model = KeywordModel(path, labels, num_threads=1)
        self.extractor = MfccExtractor()
        # "bare": the bare loop with the default decision rule (command gate included when the
        # defaults turn it on); "bare_plain": plain spotting, no gate; "pipeline": Pipeline.feed.
        self.cpu: dict[str, dict[int, list[float]]] = {k: {s: [] for s in STRIDES}
                                                       for k in ("bare", "bare_plain", "pipeline")}
        self.decisions: dict[str, dict[int, list[tuple[str, int]]]] = {k: {} for k in self.cpu}
        self.inferences: dict[int, int] = {}
        self.command_mode = command_params(default_params()) is not None

    def measure_loops(self, repeats: int) -> None:
        for _ in range(repeats):
            for stride in STRIDES:
                params = default_params(stride)
                for kind, prm in (("bare", params), ("bare_plain", plain(params))):
                    cpu, (decisions, inferences) = cpu_timed(
                        lambda: bare_run(self.audio, self.bare_model, self.extractor, prm))
                    self.cpu[kind][stride].append(cpu)
                    self.decisions[kind][stride] = [(k, e) for k, _, e in decisions]
                    self.inferences[stride] = inferences
                cpu, (found, _) = cpu_timed(lambda: pipeline_run(self.audio, self.model, self.model_name, params))
                self.cpu["pipeline"][stride].append(cpu)
                self.decisions["pipeline"][stride] = [(d.keyword, round(d.end * RATE)) for d in found]

    def measure_paced(self, seconds: float, blocks_ms: Sequence[int] = PACED_BLOCKS_MS) -> dict[str, Any]:
        """Diagnostic: the bare loop (stride 1) paced in real time, as a live spotter runs."""
        audio = self.audio[: int(seconds * RATE)]
        out = {}
        for ms in blocks_ms:
            cpu, _ = cpu_timed(lambda: bare_run(audio, self.bare_model, self.extractor, default_params(1),
                                                paced_block=RATE * ms // 1000))
            out[f"{ms}ms"] = {"us_per_s": 1e6 * cpu / (len(audio) / RATE), "seconds": len(audio) / RATE,
                              "block_ms": ms}
        return out

    def bare(self, stride: int) -> dict[str, Any]:
        return summarise(self.cpu["bare"][stride], self.audio_s)

    def loops_report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bare": {}, "bare_plain": {}, "pipeline": {}}
        for stride in STRIDES:
            bare = self.bare(stride)
            for kind in out:
                r = summarise(self.cpu[kind][stride], self.audio_s)
                r["detections"] = len(self.decisions[kind][stride])
                r["inferences"] = self.inferences[stride]
                if kind != "bare":
                    r["ratio_to_bare"] = r["us_per_s"] / bare["us_per_s"]
                out[kind][str(stride)] = r
            out["pipeline"][str(stride)]["same_decisions_as_bare"] = (
                self.decisions["pipeline"][stride] == self.decisions["bare"][stride])
        out["command_mode_default"] = self.command_mode
        return out

    def stages(self) -> dict[str, Any]:
        """Each stage alone, over the whole stream at stride 1, as a separate timed loop."""
        audio, audio_s = self.audio, self.audio_s
        blocks = [audio[i : i + BLOCK] for i in range(0, len(audio) - BLOCK + 1, BLOCK)]
        out: dict[str, Any] = {}

        def per_s(cpu: float) -> float:
            return 1e6 * cpu / audio_s

        # Capture: the PortAudio callback body (copy into the preallocated ring).
        session = CaptureSession(device_name="bench", rate=RATE, channels=1,
                                 ring=RingBuffer(int(RING_SECONDS * RATE), 1), converter=StreamConverter(RATE, 1))
        status = SimpleNamespace(input_overflow=False)
        frames_2d = [b.reshape(-1, 1) for b in blocks]

        def capture() -> None:
            for b in frames_2d:
                session.callback(b, len(b), None, status)
                session.ring.read(0)

        def capture_write_only() -> None:
            ring = RingBuffer(int(RING_SECONDS * RATE), 1)
            for b in frames_2d:
                ring.write(b)

        cpu_cb, _ = cpu_timed(capture)
        cpu_w, _ = cpu_timed(capture_write_only)
        out["capture_copy"] = {"us_per_s": per_s(cpu_w), "what": f"RingBuffer.write of {DEFAULT_BLOCK_MS} ms blocks"}
        out["capture_callback_and_ring_read"] = {
            "us_per_s": per_s(cpu_cb),
            "what": f"CaptureSession.callback + RingBuffer.read(0) per {DEFAULT_BLOCK_MS} ms block (worker side)"}

        fw = FeatureWindow(self.extractor)
        windows: list[np.ndarray] = []
        ends: list[int] = []

        def mfcc() -> None:
            for b in blocks:
                for _ in fw.push(b):
                    pass

        cpu_mfcc, _ = cpu_timed(mfcc)
        out["mfcc"] = {"us_per_s": per_s(cpu_mfcc),
                       "what": f"FeatureWindow.push of {DEFAULT_BLOCK_MS} ms blocks (one frame per 20 ms hop)"}

        fw = FeatureWindow(self.extractor)
        for b in blocks:
            for total in fw.push(b):
                if total >= NUM_FRAMES:
                    windows.append(fw.window().copy())
                    ends.append(fw.samples_covered)

        def infer() -> list[np.ndarray]:
            return [self.model.probabilities(w) for w in windows]

        cpu_inf, probs = cpu_timed(infer)
        out["inference"] = {"us_per_s": per_s(cpu_inf), "per_call_us": 1e6 * cpu_inf / max(1, len(windows)),
                            "calls": len(windows), "what": "KeywordModel.probabilities per window (stride 1)"}

        def raw_invoke() -> None:
            interp = self.bare_model.interpreter
            q = np.zeros((1, NUM_FRAMES, 10, 1), dtype=np.int8)
            for _ in windows:
                interp.set_tensor(self.bare_model.input_index, q)
                interp.invoke()
                interp.get_tensor(self.bare_model.output_index)

        cpu_raw, _ = cpu_timed(raw_invoke)
        out["interpreter_only"] = {"us_per_s": per_s(cpu_raw), "per_call_us": 1e6 * cpu_raw / max(1, len(windows)),
                                   "what": "set_tensor + invoke + get_tensor alone (part of inference)"}

        decider = KeywordDecider(self.model.labels, default_params().decision)

        def decide() -> int:
            return sum(decider.update(p, e, RATE) is not None for p, e in zip(probs, ends))

        cpu_dec, fired = cpu_timed(decide)
        out["decision"] = {"us_per_s": per_s(cpu_dec), "what": "KeywordDecider.update per inference"}

        command = command_params(default_params())
        if command is not None:  # command mode: every hop's level, and the candidates, through the gate
            gate = make_command_gate(default_params(), self.model.labels)
            hops = [(audio[e - HOP : e], e) for e in range(FRAME, len(audio) + 1, HOP)]
            cpu_gate, _ = cpu_timed(lambda: [gate.push(h, e) for h, e in hops])
            out["command_gate"] = {"us_per_s": per_s(cpu_gate), "what": "CommandGate.push per hop (command mode)"}

        # Sinks: per detection, scaled by how many detections this stream has per second.
        detection = Detection("yes", 0.9731, 12.34, 13.34, "mic:default", self.model_name,
                              "2026-11-25T08:00:54.212Z")
        calls = 2000
        rate = fired / audio_s
        with open(os.devnull, "w") as devnull:
            sink = StdoutSink("json", stream=devnull)
            cpu_sink, _ = cpu_timed(lambda: [sink.handle(detection) for _ in range(calls)])
            bus = EventBus([StdoutSink("json", stream=devnull)])

            def via_bus() -> None:
                for _ in range(calls):
                    bus.publish(detection)
                    time.sleep(0)  # the worker publishes between audio blocks, not in a burst
                bus.close()

            cpu_bus, _ = cpu_timed(via_bus)
        out["sinks"] = {"us_per_s": 1e6 * cpu_sink / calls * rate, "per_detection_us": 1e6 * cpu_sink / calls,
                        "detections_per_s": rate, "what": "StdoutSink.handle to /dev/null"}
        out["sinks_via_bus"] = {"us_per_s": 1e6 * cpu_bus / calls * rate, "per_detection_us": 1e6 * cpu_bus / calls,
                                "what": "EventBus.publish -> queue -> sink thread -> StdoutSink.handle"}
        out["sum_of_stages"] = {"us_per_s": sum(out[k]["us_per_s"] for k in
                                                ("capture_callback_and_ring_read", "mfcc", "inference", "decision",
                                                 "command_gate", "sinks_via_bus") if k in out)}
        return out


def clips_spotted(model: KeywordModel, name: str, stride: int) -> dict[str, Any]:
    """Shared clips (as recorded, and with 0.5 s of room noise around) whose detections are
    exactly the keywords their names say, by the real Pipeline at this stride."""
    noise = read_clip(NOISE_CLIP)
    pad = np.resize(noise, RATE // 2)
    ok = total = 0
    wrong: list[str] = []
    for clip_name in KEYWORD_CLIPS + NEGATIVE_CLIPS[:5] + NEGATIVE_CLIPS[5:]:
        clip = read_clip(clip_name)
        for variant, audio in (("", clip), ("+noise", np.concatenate((pad, clip, pad)))):
            found, _ = pipeline_run(audio, model, name, default_params(stride))
            got = tuple(d.keyword for d in found)
            total += 1
            if got == expected_words(clip_name):
                ok += 1
            else:
                wrong.append(f"{clip_name}{variant}: {','.join(got) or '-'}")
    return {"exact": ok, "clips": total, "wrong": wrong}


def accuracy_from_harness(strides: Iterable[int], corpus: Path | None) -> dict[str, Any] | None:
    """Per-stride accuracy from `benchmarks.accuracy.stride_accuracy` (plain decision stage, the
    default smoothing/threshold/refractory): the shared clips, plus the synthetic keyword set and
    the keyword-free stream of `corpus` when given (None: the shared clips only, for --quick)."""
    try:
        from . import accuracy
        return {str(k): v for k, v in accuracy.stride_accuracy(tuple(strides), corpus).items()}
    except Exception as exc:  # the column says why it is empty
        return {"error": repr(exc)}


# ----------------------------------------------------------------------------- live daemon


def _test_helpers() -> tuple[Any, Any]:
    """The virtual microphone and daemon runner the end-to-end tests use."""
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from daemon_process import DaemonProcess  # type: ignore[import-not-found]
    from vmic import VirtualMic  # type: ignore[import-not-found]

    return VirtualMic, DaemonProcess


def kws_command() -> list[str]:
    """This interpreter's kws-stream (never another install found on PATH)."""
    return [sys.executable, "-m", "kws_stream"]


def start_daemon(mic: Any, stride: int, model: str = "micronet-l", extra: Sequence[str] = ()) -> Any:
    _, DaemonProcess = _test_helpers()
    env = {**mic.env, "PYTHONUNBUFFERED": "1"}
    args = [*kws_command(), "run", "--model", model, "--model-dir", str(default_model_dir()),
            "--stride", str(stride), *extra]
    daemon = DaemonProcess(args, env)
    try:
        daemon.wait_log("event=ready", timeout=60)
    except BaseException:
        daemon.stop()
        raise
    return daemon


def drain(daemon: Any) -> list[tuple[float, dict[str, Any]]]:
    out = []
    while True:
        try:
            t, line = daemon.stdout.get_nowait()
        except Exception:
            return out
        out.append((t, json.loads(line)))


# Live latency: synthetic keyword commands from the corpus (benchmarks/corpus.py), each followed by
# LATENCY_TAIL_S of noise at the clip's own noise level: a command spoken in a room, with no
# digital-zero gaps (unrealistic, and they confuse command mode's adaptive noise floor).
LATENCY_TAIL_S = 1.2
DEFAULT_CORPUS = Path(tempfile.gettempdir()) / "kws-corpus"


@dataclasses.dataclass(frozen=True)
class LatencyWord:
    """One synthetic keyword clip and where its word really ends (keywords.csv `word_end_s`)."""

    path: Path
    keyword: str
    word_end_s: float


def _pick_rows(rows: Sequence[dict[str, str]], n: int, seed: int = 1) -> list[dict[str, str]]:
    """n rows spread evenly over the keywords (round robin), deterministic for a seed."""
    rng = np.random.default_rng(seed)
    by_keyword: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_keyword.setdefault(row["keyword"], []).append(row)
    pools = {k: [v[i] for i in rng.permutation(len(v))] for k, v in sorted(by_keyword.items())}
    picked: list[dict[str, str]] = []
    while len(picked) < n and any(pools.values()):
        for k in list(pools):
            if pools[k] and len(picked) < n:
                picked.append(pools[k].pop())
    order = rng.permutation(len(picked))
    return [picked[i] for i in order]


def latency_words(n: int, corpus: Path, workdir: Path, quick: bool) -> list[LatencyWord]:
    """n synthetic keyword clips from the corpus keyword set (built if missing).

    `--quick` without a built corpus renders only the n clips it needs into `workdir`
    (the same voices, levels and noise as the corpus), so the smoke test stays short.
    """
    import csv

    from . import corpus as corpus_mod

    csv_path = corpus / "keywords.csv"
    if not csv_path.exists() and quick:
        tools = corpus_mod.detect_tools()
        plan = corpus_mod.plan_keyword_clips(tools, seed=0)
        picked = _pick_rows([{"keyword": c.keyword, "i": str(i)} for i, c in enumerate(plan)], n)
        rows = [corpus_mod.render_keyword_clip(plan[int(r["i"])], workdir / "kw") for r in picked]
        return [LatencyWord(workdir / "kw" / r["path"], r["keyword"], float(r["word_end_s"])) for r in rows]
    if not csv_path.exists():
        corpus_mod.build_corpus(corpus)
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [LatencyWord(corpus / r["path"], r["keyword"], float(r["word_end_s"])) for r in _pick_rows(rows, n)]


def clip_noise_sigma(clip: np.ndarray) -> float:
    """The clip's own noise level: RMS of its quietest 20 ms hops (10th percentile of hop power)."""
    x = clip.astype(np.float64)
    hops = x[: len(x) // HOP * HOP].reshape(-1, HOP)
    return float(np.sqrt(np.percentile((hops ** 2).mean(axis=1), 10)))


def command_audio(word: LatencyWord, seed: int) -> tuple[np.ndarray, int]:
    """The clip followed by LATENCY_TAIL_S of gaussian noise at its own noise level; (audio, clip samples)."""
    import scipy.io.wavfile

    rate, clip = scipy.io.wavfile.read(word.path)
    if rate != RATE:
        raise SystemExit(f"{word.path}: expected {RATE} Hz, got {rate}")
    clip = np.asarray(clip, dtype=np.int16)
    tail = np.random.default_rng(seed).normal(0.0, clip_noise_sigma(clip), int(LATENCY_TAIL_S * RATE))
    return np.concatenate([clip, np.clip(np.round(tail), -32768, 32767).astype(np.int16)]), len(clip)


def measure_latency(mic: Any, daemon: Any, words: Sequence[LatencyWord]) -> dict[str, Any]:
    """Play keyword commands back to back; match each word to its JSON line.

    A word's end is `word_end_s` in its clip, timed by when the feeder wrote the last sample
    of clip + tail into the FIFO. Latency = line read time - word end; negative when plain
    spotting's smoothed score crossed the threshold before the word was over. A detection
    matches the first unmatched played word of the same keyword whose end lies within
    [-1.0, +1.5] s of it.
    """
    lead, _ = command_audio(words[0], seed=10_000)
    mic.play(lead[-int(0.5 * RATE):]).wait(30)  # 0.5 s of room noise; whatever played before is over
    drain(daemon)
    played: list[tuple[LatencyWord, Any, int, int]] = []
    for i, w in enumerate(words):
        audio, n_clip = command_audio(w, seed=i)
        played.append((w, mic.play(audio), len(audio), n_clip))
    ends: list[float] = []
    for w, handle, n, _ in played:
        written = handle.wait(n / RATE + 60)
        if written is None:
            raise RuntimeError(f"the virtual microphone did not play {w.path}")
        ends.append(written - n / RATE + w.word_end_s)
    time.sleep(2.0)
    found = drain(daemon)
    used = [False] * len(found)
    latencies: list[float] = []
    misses: list[str] = []
    for (w, _, _, _), end in zip(played, ends):
        for i, (t, d) in enumerate(found):
            if not used[i] and d["keyword"] == w.keyword and end - 1.0 <= t <= end + 1.5:
                used[i] = True
                latencies.append(1000 * (t - end))
                break
        else:
            misses.append(f"{w.keyword}:{w.path.parent.name}/{w.path.name}")
    extras = [d["keyword"] for (t, d), u in zip(found, used) if not u]
    lat = sorted(latencies)
    return {
        "keywords_played": len(words), "matched": len(lat), "missed": misses, "extra_detections": extras,
        "p50_ms": float(np.percentile(lat, 50)) if lat else None,
        "p95_ms": float(np.percentile(lat, 95)) if lat else None,
        "max_ms": max(lat) if lat else None, "min_ms": min(lat) if lat else None,
        "samples_ms": [round(x, 1) for x in latencies],
    }


IMPORT_STEPS = (
    ("numpy", "import numpy"),
    ("scipy.io.wavfile", "import scipy.io.wavfile"),
    ("soxr", "import soxr"),
    ("sounddevice (PortAudio)", "import sounddevice"),
    ("ai_edge_litert", "from ai_edge_litert.interpreter import Interpreter"),
    ("kws_stream cli+daemon", "import kws_stream.cli, kws_stream.daemon"),
    ("micronet-l loaded", "from kws_stream.backend import KeywordModel; m = KeywordModel(PATH, LABELS)"),
)


def import_memory(env: dict[str, str]) -> dict[str, Any]:
    """Resident memory a fresh interpreter gains per import, in the order the daemon needs them
    (a shared library is charged to the first import that loads it)."""
    path, labels = model_path("micronet-l")
    code = "\n".join([
        "import json, kws_stream",
        "def rss():",
        "    for line in open('/proc/self/status'):",
        "        if line.startswith('VmRSS:'): return int(line.split()[1]) / 1024",
        f"PATH, LABELS = {str(path)!r}, {tuple(labels)!r}",
        "steps = [('python + kws_stream/__init__', rss())]",
        *[f"{c}\nsteps.append(({n!r}, rss()))" for n, c in IMPORT_STEPS],
        "print(json.dumps(steps))",
    ])
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return {"error": r.stderr.strip()[-500:]}
    steps = json.loads(r.stdout.strip().splitlines()[-1])
    out, last = [], 0.0
    for name, rss in steps:
        out.append({"step": name, "added_mb": rss - last, "rss_mb": rss})
        last = rss
    return {"steps": out}


def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by OS thread id, from `py-spy dump` when py-spy is installed."""
    exe = shutil.which("py-spy")
    if exe is None:
        return {}
    try:
        text = subprocess.run([exe, "dump", "-p", str(pid)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    names = {}
    for line in text.splitlines():
        parts = line.split(None, 3)  # Thread 1961 (active): "worker"
        if len(parts) >= 3 and parts[0] == "Thread" and parts[1].isdigit():
            names[int(parts[1])] = parts[3].strip('"') if len(parts) == 4 else "(python, unnamed)"
    return names


def thread_breakdown(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                     seconds: float, names: dict[int, str]) -> list[dict[str, Any]]:
    rows = []
    for tid, (comm, cpu) in after.items():
        used = cpu - before.get(tid, (comm, 0.0))[1]
        rows.append({"tid": tid, "comm": comm, "python_name": names.get(tid),
                     "cpu_s": used, "us_per_s": 1e6 * used / seconds})
    return sorted(rows, key=lambda r: -r["cpu_s"])


def run_daemon_phases(plan: Plan, stream: np.ndarray, workdir: Path, corpus: Path = DEFAULT_CORPUS) -> dict[str, Any]:
    """Daemons through the virtual microphone, one after another.

    "1" (the defaults: stride 1, command mode, DEFAULT_BLOCK_MS blocks): idle over silence,
    cost over speech, live latency of keyword commands; "1-plain" (`[command] enabled = false`):
    cost over speech and the same latency; then the other strides and capture block sizes:
    cost over speech.
    """
    VirtualMic, _ = _test_helpers()
    out: dict[str, Any] = {"cost": {}, "idle": {}, "latency": {}, "threads": None}
    speech = np.resize(stream, int(plan.speech_s * RATE))
    words = latency_words(plan.latency_keywords, corpus, workdir, plan.quick)
    with VirtualMic(workdir / "vmic", rate=RATE, channels=1) as mic:
        # (key, stride, block_ms or 0 for the default, command mode on)
        runs = [("1", 1, 0, True), ("1-plain", 1, 0, False)]
        runs += [(str(s), s, 0, True) for s in plan.daemon_strides if s != 1]
        runs += [(f"1@{ms}ms", 1, ms, True) for ms in plan.block_variants if ms != DEFAULT_BLOCK_MS]
        for key, stride, block_ms, command in runs:
            conf_text = (f"[audio]\nblock_ms = {block_ms}\n" if block_ms else "") + \
                        ("" if command else "[command]\nenabled = false\n")
            extra: list[str] = []
            if conf_text:
                conf = workdir / f"daemon_{key}.toml"
                conf.write_text(conf_text)
                extra = ["--config", str(conf)]
            daemon = start_daemon(mic, stride, extra=extra)
            pid = daemon.proc.pid
            try:
                time.sleep(plan.warmup_s)
                if key == "1":
                    a = procstat.Sample.take(pid)
                    time.sleep(plan.silence_s)
                    b = procstat.Sample.take(pid)
                    mem = procstat.memory(pid)
                    silence = procstat.Interval(a, b)
                    out["idle"]["silence"] = {"seconds": silence.wall, "cpu_s": silence.cpu,
                                              "cpu_percent": silence.cpu_percent, "vmhwm_mb": mem.hwm_mb,
                                              "vmrss_mb": mem.rss_mb}
                seconds = plan.speech_s if key == "1" else plan.other_stride_s
                audio = speech[: int(seconds * RATE)]
                drain(daemon)
                threads_before = procstat.thread_cpu(pid)
                a = procstat.Sample.take(pid)
                done = mic.play(audio).wait(seconds + 30)
                if done is None:
                    raise RuntimeError("the virtual microphone did not play the speech stream")
                time.sleep(0.1)  # the last block through PulseAudio and the worker
                b = procstat.Sample.take(pid)
                threads_after = procstat.thread_cpu(pid)
                mem = procstat.memory(pid)
                spoken = procstat.Interval(a, b)
                detections = len(drain(daemon))
                out["cost"][key] = {"block_ms": block_ms or DEFAULT_BLOCK_MS, "stride": stride,
                                    "command_mode": command, "seconds": spoken.wall, "audio_s": len(audio) / RATE,
                                    "cpu_s": spoken.cpu, "us_per_s": 1e6 * spoken.cpu / spoken.wall,
                                    "cpu_percent": spoken.cpu_percent, "detections": detections}
                if key == "1":
                    out["idle"]["speech"] = {"seconds": spoken.wall, "cpu_s": spoken.cpu,
                                             "cpu_percent": spoken.cpu_percent, "vmhwm_mb": mem.hwm_mb,
                                             "vmrss_mb": mem.rss_mb}
                    out["threads"] = thread_breakdown(threads_before, threads_after, spoken.wall, thread_names(pid))
                if key in ("1", "1-plain"):
                    mode = "command" if command else "plain"
                    out["latency"][mode] = measure_latency(mic, daemon, words)
                    out["latency"][mode]["vmhwm_mb_after"] = procstat.memory(pid).hwm_mb
            finally:
                code = daemon.stop()
            overflow_lines = [line for line in daemon.stderr.splitlines() if "event=ring_overflow" in line
                              or "event=input_overflow" in line]
            out["cost"].setdefault(key, {})["exit_code"] = code
            out["cost"][key]["overflow_log_lines"] = len(overflow_lines)
        out["import_memory"] = import_memory(mic.env)
        out["mic"] = {"feeder_resyncs": mic.stats["resyncs"], "feeder_max_late_ms": 1000 * mic.max_late_s}
    out["latency"]["tail_s"] = LATENCY_TAIL_S
    out["latency"]["words"] = [f"{w.keyword}:{w.path.parent.name}/{w.path.name}" for w in words]
    return out


# ----------------------------------------------------------------------------- file throughput


def run_detect(wav: Path, model: str) -> dict[str, Any]:
    """`kws-stream detect` on one file: wall time, CPU time (rusage of the child) and lines."""
    args = [*kws_command(), "detect", "--model", model, "--model-dir", str(default_model_dir()), str(wav)]
    t0 = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"kws-stream detect failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_mb": usage.ru_maxrss / 1024,
            "detections": len(stdout.splitlines())}


def file_throughput(plan: Plan, workdir: Path) -> dict[str, Any]:
    wav = workdir / "long.wav"
    write_wav(wav, build_stream(plan.file_s, seed=1))
    short = workdir / "one_second.wav"
    write_wav(short, read_clip("keywords/yes.wav"))
    out: dict[str, Any] = {"audio_s": plan.file_s, "models": {}}
    for model in MODELS:
        startup = run_detect(short, model)
        r = run_detect(wav, model)
        r.update(x_realtime_wall=plan.file_s / r["wall_s"], x_realtime_cpu=plan.file_s / r["cpu_s"],
                 cpu_us_per_s=1e6 * r["cpu_s"] / plan.file_s,
                 startup_wall_s=startup["wall_s"], startup_cpu_s=startup["cpu_s"])
        out["models"][model] = r
    wav.unlink()
    return out


# ----------------------------------------------------------------------------- report


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "") if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict[str, Any]:
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "cpu_model": procstat.cpu_model(), "cpus": os.cpu_count(), "machine": platform.machine(),
        "kernel": platform.release(), "python": platform.python_version(), "numpy": np.__version__,
        "runtime": runtime_version(), "kws_stream": kws_stream.__version__, "git": git_revision(),
        "loadavg_start": os.getloadavg()[0],
        "threads_env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")},
    }


def run(plan: Plan, progress: Callable[[str], None], corpus: Path = DEFAULT_CORPUS) -> dict[str, Any]:
    result: dict[str, Any] = {"meta": machine(), "plan": dataclasses.asdict(plan), "targets": TARGETS}
    stream = build_stream(plan.stream_s, seed=0)
    progress(f"in-process: bare loop and Pipeline at strides {STRIDES} over {plan.stream_s:.0f} s of audio")
    inproc = InProcess(stream)
    inproc.measure_loops(plan.repeats)
    progress("in-process: stages")
    result["stages"] = inproc.stages()
    with tempfile.TemporaryDirectory(prefix="kws-speed-") as tmp:
        progress(f"daemon through the virtual microphone: strides {plan.daemon_strides}, blocks "
                 f"{DEFAULT_BLOCK_MS} (default) {' '.join(map(str, plan.block_variants))} ms; "
                 f"{plan.silence_s:.0f} s silence + {plan.speech_s:.0f} s speech + latency over "
                 f"{plan.latency_keywords} keyword commands, command mode and plain")
        daemon = run_daemon_phases(plan, stream, Path(tmp), corpus)
        progress("in-process: bare loop and Pipeline again (after the live phases)")
        inproc.measure_loops(plan.repeats)
        progress(f"in-process: bare loop paced in real time, {plan.paced_s:.0f} s each in "
                 f"{', '.join(map(str, PACED_BLOCKS_MS))} ms blocks")
        result["bare_paced"] = inproc.measure_paced(plan.paced_s)
        progress(f"file throughput: kws-stream detect over {plan.file_s:.0f} s of audio, {', '.join(MODELS)}")
        result["file_throughput"] = file_throughput(plan, Path(tmp))
    result.update(inproc.loops_report())
    result["stream_s"] = inproc.audio_s
    for key, cost in daemon["cost"].items():
        if "us_per_s" in cost:
            # the bare loop with the same decisions: command gate included when the daemon runs command mode
            same = result["bare" if cost["command_mode"] else "bare_plain"][str(cost["stride"])]["us_per_s"]
            cost["ratio_to_bare"] = cost["us_per_s"] / same
            cost["ratio_to_bare_plain"] = cost["us_per_s"] / result["bare_plain"][str(cost["stride"])]["us_per_s"]
            paced = result["bare_paced"].get(f"{cost['block_ms']}ms")
            if cost["stride"] == 1 and cost["command_mode"] and paced:
                cost["ratio_to_bare_paced"] = cost["us_per_s"] / paced["us_per_s"]  # paced at the same block size
    result["daemon"] = daemon["cost"]
    result["idle"] = {**daemon["idle"], "mic": daemon["mic"]}
    result["daemon_threads"] = daemon["threads"]
    result["import_memory"] = daemon["import_memory"]
    result["latency"] = daemon["latency"]
    progress("stride trade-off: shared clips through the real Pipeline, and the accuracy harness")
    harness = accuracy_from_harness(STRIDES, None if plan.quick else corpus)
    result["stride_tradeoff"] = [
        {"stride": s, "bare_us_per_s": result["bare"][str(s)]["us_per_s"],
         "pipeline_us_per_s": result["pipeline"][str(s)]["us_per_s"],
         "daemon_us_per_s": result["daemon"].get(str(s), {}).get("us_per_s"),
         "inferences_per_s": result["bare"][str(s)]["inferences"] / inproc.audio_s,
         "shared_clips": clips_spotted(inproc.model, inproc.model_name, s),
         "accuracy": (harness or {}).get(str(s)), "accuracy_error": (harness or {}).get("error")}
        for s in STRIDES]
    result["meta"]["loadavg_end"] = os.getloadavg()[0]
    result["verdict"] = verdict(result)
    result["command_mode_default"] = inproc.command_mode
    return result


def verdict(r: dict[str, Any]) -> dict[str, Any]:
    ratio = r["daemon"].get("1", {}).get("ratio_to_bare")
    lat = r.get("latency") or {}
    p95 = (lat.get("plain") or {}).get("p95_ms")
    p95_cmd = (lat.get("command") or {}).get("p95_ms")
    rss = max(v["vmhwm_mb"] for k, v in r["idle"].items() if k in ("silence", "speech"))
    return {"daemon_ratio": {"value": ratio, "target": TARGETS["daemon_ratio"],
                             "met": ratio is not None and ratio <= TARGETS["daemon_ratio"]},
            "latency_p95_ms": {"value": p95, "target": TARGETS["latency_p95_ms"], "mode": "plain",
                               "met": p95 is not None and p95 <= TARGETS["latency_p95_ms"]},
            "command_latency_p95_ms": {"value": p95_cmd, "target": TARGETS["command_latency_p95_ms"],
                                       "mode": "command",
                                       "met": p95_cmd is not None and p95_cmd <= TARGETS["command_latency_p95_ms"]},
            "rss_mb": {"value": rss, "target": TARGETS["rss_mb"], "met": rss <= TARGETS["rss_mb"]}}


def _f(x: Any, fmt: str = "{:.0f}") -> str:
    return "-" if x is None else fmt.format(x)


def markdown(r: dict[str, Any]) -> str:
    m = r["meta"]
    v = r["verdict"]
    lines = [
        f"Machine: {m['cpu_model']}, {m['cpus']} CPUs ({m['machine']}, Linux {m['kernel']}); "
        f"Python {m['python']}, numpy {m['numpy']}, {m['runtime']}; kws-stream {m['kws_stream']} ({m['git']}); "
        f"{m['date']}; load average {m['loadavg_start']:.2f} -> {m['loadavg_end']:.2f}"
        + ("; **--quick (smoke test, not for quoting)**" if r["plan"]["quick"] else ""),
        "",
        f"CPU is process CPU time (utime+stime), in microseconds per second of audio, MicroNet-L; "
        f"ratios are to the bare loop measured in the same run over the same {r['stream_s']:.0f} s stream.",
        "",
        "| what | us CPU / s audio | x bare | note |",
        "|---|---:|---:|---|",
        f"| bare loop, stride 1 | {_f(r['bare']['1']['us_per_s'])} | 1.00 | "
        f"min {_f(r['bare']['1']['min_us_per_s'])}, {r['bare']['1']['runs']} runs"
        f"{', command gate included (default decisions)' if r['command_mode_default'] else ''} |",
        f"| bare loop, plain decisions (no command gate) | {_f(r['bare_plain']['1']['us_per_s'])} | "
        f"{_f(r['bare_plain']['1']['ratio_to_bare'], '{:.2f}')} | |",
        f"| Pipeline.feed in-process, stride 1 | {_f(r['pipeline']['1']['us_per_s'])} | "
        f"{_f(r['pipeline']['1']['ratio_to_bare'], '{:.2f}')} | same decisions as bare: "
        f"{r['pipeline']['1']['same_decisions_as_bare']} |",
    ]
    d1 = r["daemon"].get("1", {})
    lines.append(f"| **kws-stream run (daemon), stride 1, {d1.get('block_ms')} ms blocks (defaults)** | "
                 f"{_f(d1.get('us_per_s'))} | **{_f(d1.get('ratio_to_bare'), '{:.2f}')}** | target <= "
                 f"{TARGETS['daemon_ratio']}: {'met' if v['daemon_ratio']['met'] else 'NOT met'}; "
                 f"{_f(d1.get('seconds'), '{:.0f}')} s live; daemon / bare paced in "
                 f"{d1.get('block_ms')} ms blocks = {_f(d1.get('ratio_to_bare_paced'), '{:.2f}')} |")
    dp = r["daemon"].get("1-plain", {})
    if "us_per_s" in dp:
        lines.append(f"| kws-stream run, command mode off (plain) | {_f(dp['us_per_s'])} | "
                     f"{_f(dp['us_per_s'] / r['bare']['1']['us_per_s'], '{:.2f}')} | x bare plain: "
                     f"{_f(dp['ratio_to_bare'], '{:.2f}')}; {dp['seconds']:.0f} s live |")
    for key, paced in r["bare_paced"].items():
        lines.append(f"| diagnostic: bare loop paced in real time, {paced['block_ms']} ms blocks | "
                     f"{_f(paced['us_per_s'])} | {_f(paced['us_per_s'] / r['bare']['1']['us_per_s'], '{:.2f}')} | "
                     f"same loop, sleeping until each block is due ({paced['seconds']:.0f} s) |")
    for key, d in r["daemon"].items():
        if key.startswith("1@") and "us_per_s" in d:
            lines.append(f"| kws-stream run, stride 1, {d['block_ms']} ms capture blocks | {_f(d['us_per_s'])} | "
                         f"{_f(d['ratio_to_bare'], '{:.2f}')} | daemon / bare paced in {d['block_ms']} ms blocks = "
                         f"{_f(d.get('ratio_to_bare_paced'), '{:.2f}')}; {d['seconds']:.0f} s live |")
    for key, d in r["daemon"].items():
        if key not in ("1", "1-plain") and not key.startswith("1@") and "us_per_s" in d:
            s_ = str(d["stride"])
            lines.append(f"| kws-stream run, stride {s_}, {d['block_ms']} ms capture blocks | {_f(d['us_per_s'])} | "
                         f"{_f(d['ratio_to_bare'], '{:.2f}')} | bare at stride {s_}: {_f(r['bare'][s_]['us_per_s'])}; "
                         f"{d['seconds']:.0f} s live |")
    lines += ["", "Per stage (stride 1, each stage alone over the stream):", "",
              "| stage | us CPU / s audio | what |", "|---|---:|---|"]
    for key, st in r["stages"].items():
        lines.append(f"| {key} | {_f(st['us_per_s'], '{:.1f}')} | {st.get('what', '')} |")
    if r.get("daemon_threads"):
        lines += ["", "Daemon threads over the speech window (stride 1):", "",
                  "| thread | us CPU / s audio |", "|---|---:|"]
        for t in r["daemon_threads"]:
            if t["cpu_s"] > 0:
                lines.append(f"| {t['python_name'] or t['comm']} ({t['tid']}) | {t['us_per_s']:.0f} |")
    if r.get("import_memory", {}).get("steps"):
        lines += ["", "Resident memory a fresh interpreter gains per import (what the daemon loads):", "",
                  "| step | + MB | RSS MB |", "|---|---:|---:|"]
        for st in r["import_memory"]["steps"]:
            lines.append(f"| {st['step']} | {st['added_mb']:.1f} | {st['rss_mb']:.1f} |")
    lat = r["latency"] or {}
    idle = r["idle"]
    lines += [
        "", f"Live latency: {len(lat.get('words', []))} synthetic keyword commands (the corpus keyword set: "
        f"10 voices, each clip followed by {lat.get('tail_s')} s of noise at its own noise level), played through "
        "the virtual microphone; latency = JSON line read - true end of the word (keywords.csv `word_end_s`); "
        "negative = reported before the word was over.", "",
        "| mode | p50 / p95 / max (ms) | matched / played | extra detections | target |",
        "|---|---:|---:|---:|---|"]
    for mode, key, label in (("plain", "latency_p95_ms", "plain (`[command] enabled = false`)"),
                             ("command", "command_latency_p95_ms", "command mode (default)")):
        m = lat.get(mode) or {}
        lines.append(f"| {label} | {_f(m.get('p50_ms'))} / {_f(m.get('p95_ms'))} / {_f(m.get('max_ms'))} | "
                     f"{m.get('matched')} / {m.get('keywords_played')} | {len(m.get('extra_detections', []))} | "
                     f"p95 <= {TARGETS[key]:.0f}: {'met' if v[key]['met'] else 'NOT met'} |")
    lines += [
        "", "| live, defaults | value | target |", "|---|---:|---|",
        f"| CPU, silence ({_f(idle['silence']['seconds'])} s) | {idle['silence']['cpu_percent']:.2f} % of a core | |",
        f"| CPU, speech ({_f(idle['speech']['seconds'])} s) | {idle['speech']['cpu_percent']:.2f} % of a core | |",
        f"| peak RSS (VmHWM) after silence / after speech | {idle['silence']['vmhwm_mb']:.1f} / "
        f"{idle['speech']['vmhwm_mb']:.1f} MB | <= {TARGETS['rss_mb']:.0f} MB: "
        f"{'met' if v['rss_mb']['met'] else 'NOT met'} |",
    ]
    ft = r["file_throughput"]
    lines += ["", f"File throughput, `kws-stream detect` over {ft['audio_s'] / 60:.0f} min of audio:", "",
              "| model | x real time (wall) | x real time (CPU) | us CPU / s audio | wall s | startup wall s | "
              "detections |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, f in ft["models"].items():
        lines.append(f"| {name} | {f['x_realtime_wall']:.0f} | {f['x_realtime_cpu']:.0f} | {f['cpu_us_per_s']:.0f} | "
                     f"{f['wall_s']:.1f} | {f['startup_wall_s']:.2f} | {f['detections']} |")
    lines += ["", "Stride trade-off (CPU in us per second of audio; shared clips = the 15 shared clips as recorded "
              "and padded with 0.5 s of room noise, spotted exactly by the real Pipeline with the defaults; the "
              "accuracy columns come from `benchmarks.accuracy` with the plain decision stage at the default "
              "smoothing/threshold/refractory: command mode is evaluated separately in `benchmarks.command_mode`):",
              "", "| stride | inferences / s | bare | Pipeline | daemon | shared clips exact | shared acc (plain) | "
              "synth acc (plain) | synth recall (plain) | FA/h (plain) |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in r["stride_tradeoff"]:
        sc = t["shared_clips"]
        acc = t["accuracy"] or {}
        pct = lambda x: "-" if x is None else f"{100 * x:.1f} %"  # noqa: E731
        lines.append(f"| {t['stride']} | {t['inferences_per_s']:.1f} | {_f(t['bare_us_per_s'])} | "
                     f"{_f(t['pipeline_us_per_s'])} | {_f(t['daemon_us_per_s'])} | {sc['exact']}/{sc['clips']} | "
                     f"{pct(acc.get('shared_accuracy'))} | {pct(acc.get('synthetic_accuracy'))} | "
                     f"{pct(acc.get('synthetic_recall'))} | {_f(acc.get('fa_per_hour'), '{:.1f}')} |")
    err = next((t["accuracy_error"] for t in r["stride_tradeoff"] if t.get("accuracy_error")), None)
    if err:
        lines.append(f"\n(accuracy harness: {err})")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a short smoke run of every section (about a minute)")
    p.add_argument("--json", type=Path, metavar="OUT", help="write all results as JSON")
    p.add_argument("--markdown", type=Path, metavar="OUT", help="write the tables as markdown")
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                   help="synthetic corpus (benchmarks.corpus) for the latency commands and the accuracy columns; "
                        "built if missing (default: %(default)s)")
    args = p.parse_args(argv)
    plan = Plan.make(args.quick)
    t0 = time.monotonic()
    result = run(plan, lambda msg: print(f"[{time.monotonic() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True),
                 args.corpus.resolve())
    result["meta"]["benchmark_wall_s"] = time.monotonic() - t0
    text = markdown(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
