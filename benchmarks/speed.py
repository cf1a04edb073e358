"""Speed and memory of kws-stream, measured against a bare baseline in the same run.

    python -m benchmarks.speed [--quick] [--json OUT] [--markdown OUT]

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
  45 s); measured before
  and after the live phases, median of all repeats;
- pipeline: the real `Pipeline.feed` in-process on the same stream in 20 ms blocks;
- stages: capture callback copy (`CaptureSession.callback` -> `RingBuffer.write`), ring
  read, MFCC (`FeatureWindow.push` per hop), inference (`KeywordModel.probabilities`),
  decision (`KeywordDecider.update`), sinks (`StdoutSink.handle` to /dev/null, and the
  same through the `EventBus`); us per second of audio;
- daemon: the real `kws-stream run` fed in real time through the PulseAudio virtual
  microphone (tests/vmic.py); utime+stime of its PID from /proc between two samples
  taken after warm-up, per second of audio, and the ratio to the bare loop; also per
  thread (names from `py-spy dump` when installed), at strides 2/4/8 and with 100 ms
  capture blocks; a diagnostic `bare_paced` runs the bare loop in real time (sleeping
  until each 20 ms / 100 ms block is due) to separate the cost of waking up every
  block (cold caches, timer wake-ups) from the daemon's own overhead;
- idle: CPU % of one core and peak RSS (VmHWM) of that daemon over silence and speech,
  and what each import adds to a fresh interpreter's RSS;
- latency: from the moment the last sample of a keyword is written into the virtual
  microphone to the moment its JSON line is read from the daemon's stdout;
- file throughput: `kws-stream detect` over one hour of audio (`--quick`: 1 min),
  wall and CPU, as a multiple of real time, for micronet-l and micronet-m;
- stride trade-off: the CPU per stride from bare, pipeline and daemon, the shared clips
  spotted exactly by the real Pipeline, and the accuracy harness's figures when
  `benchmarks.accuracy` offers them (else null).
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
from kws_stream.backend import KeywordModel, _native_stderr_silenced
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
BLOCK = 320  # 20 ms, the daemon's default capture block
STRIDES = (1, 2, 4, 8)
MODELS = ("micronet-l", "micronet-m")
KEYWORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
TARGETS = {"daemon_ratio": 1.25, "latency_p95_ms": 200.0, "rss_mb": 80.0}

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
    latency_rounds: int = 3  # rounds over LATENCY_SET (12 keywords each)
    daemon_strides: tuple[int, ...] = (1, 2, 4, 8)
    block_variants: tuple[int, ...] = (100,)  # extra daemon runs at stride 1 with [audio] block_ms = this
    other_stride_s: float = 30.0  # speech window for the daemons at stride > 1
    file_s: float = 3600.0
    paced_s: float = 20.0  # diagnostic: the bare loop paced in real time (20 ms and 100 ms blocks)

    @classmethod
    def make(cls, quick: bool) -> "Plan":
        if not quick:
            return cls(quick=False)
        return cls(quick=True, stream_s=12.0, repeats=1, warmup_s=1.0, silence_s=5.0, speech_s=6.0,
                   latency_rounds=0, daemon_strides=(1,), block_variants=(), other_stride_s=0.0, file_s=60.0, paced_s=3.0)


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
        with _native_stderr_silenced():
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

    def measure_paced(self, seconds: float, blocks_ms: Sequence[int] = (20, 100)) -> dict[str, Any]:
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
        out["capture_copy"] = {"us_per_s": per_s(cpu_w), "what": "RingBuffer.write of 20 ms blocks"}
        out["capture_callback_and_ring_read"] = {
            "us_per_s": per_s(cpu_cb),
            "what": "CaptureSession.callback + RingBuffer.read(0) per 20 ms block (worker side)"}

        fw = FeatureWindow(self.extractor)
        windows: list[np.ndarray] = []
        ends: list[int] = []

        def mfcc() -> None:
            for b in blocks:
                for _ in fw.push(b):
                    pass

        cpu_mfcc, _ = cpu_timed(mfcc)
        out["mfcc"] = {"us_per_s": per_s(cpu_mfcc), "what": "FeatureWindow.push per 20 ms hop"}

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


def accuracy_from_harness(strides: Iterable[int]) -> dict[str, Any] | None:
    """Per-stride accuracy from benchmarks.accuracy, if it offers `stride_accuracy(strides)`."""
    try:
        from . import accuracy  # type: ignore[attr-defined]
    except Exception:  # not written yet, or broken: the column stays empty
        return None
    fn = getattr(accuracy, "stride_accuracy", None)
    if fn is None:
        return None
    try:
        return {str(k): v for k, v in fn(tuple(strides)).items()}
    except Exception as exc:
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
    exe = shutil.which("kws-stream")
    return [exe] if exe else [sys.executable, "-m", "kws_stream"]


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


# Clips played for latency, each followed by LATENCY_GAP_S of silence: 12 keywords a round.
LATENCY_SET = ("keywords/yes.wav", "keywords/down.wav", "keywords/right_left_up.wav", "keywords/yes_1000ms.wav",
               "keywords/no_1000ms.wav", "keywords/right.wav", "keywords/yes_no_go_stop.wav")
QUICK_LATENCY_SET = ("keywords/yes.wav", "keywords/right_left_up.wav")
LATENCY_GAP_S = 1.0


def measure_latency(mic: Any, daemon: Any, clips: Sequence[str]) -> dict[str, Any]:
    """Play keyword clips with 1 s of silence around them; match each word to its JSON line.

    A word's end is the end of its 1 s segment in the clip (word k of a joined clip ends
    at k+1 s; a single-word clip's end is its last sample), timed by when the feeder
    wrote the clip's last sample into the FIFO. Latency = line read time - word end;
    negative when the smoothed score crossed the threshold before the segment ended.
    """
    gap = np.zeros(int(LATENCY_GAP_S * RATE), dtype=np.int16)
    mic.play(gap).wait(LATENCY_GAP_S + 30)  # whatever played before is over
    drain(daemon)
    played: list[tuple[str, Any, int]] = []
    for name in clips:
        clip = read_clip(name)
        played.append((name, mic.play(clip), len(clip)))
        mic.play(gap)
    words: list[dict[str, Any]] = []
    for name, handle, n in played:
        written = handle.wait(n / RATE + 30)
        if written is None:
            raise RuntimeError(f"the virtual microphone did not play {name}")
        expected = expected_words(name)
        for k, word in enumerate(expected):
            seg_end = n / RATE if len(expected) == 1 else (k + 1) * 1.0
            words.append({"clip": name, "word": word, "end": written - (n / RATE - seg_end)})
    time.sleep(1.5)
    found = drain(daemon)
    used = [False] * len(found)
    latencies: list[float] = []
    misses: list[str] = []
    for w in words:
        for i, (t, d) in enumerate(found):
            if not used[i] and d["keyword"] == w["word"] and w["end"] - 1.2 <= t <= w["end"] + 2.0:
                used[i] = True
                w["latency_ms"] = 1000 * (t - w["end"])
                latencies.append(w["latency_ms"])
                break
        else:
            misses.append(f"{w['clip']}:{w['word']}")
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


def run_daemon_phases(plan: Plan, stream: np.ndarray, workdir: Path) -> dict[str, Any]:
    """stride 1: idle over silence, cost over speech, latency; then each other stride: cost over speech."""
    VirtualMic, _ = _test_helpers()
    out: dict[str, Any] = {"cost": {}, "idle": {}, "latency": None, "threads": None}
    speech = np.resize(stream, int(plan.speech_s * RATE))
    with VirtualMic(workdir / "vmic", rate=RATE, channels=1) as mic:
        runs = [(stride, 0) for stride in plan.daemon_strides] + [(1, ms) for ms in plan.block_variants]
        for stride, block_ms in runs:
            key = str(stride) if not block_ms else f"{stride}@{block_ms}ms"
            extra: list[str] = []
            if block_ms:
                conf = workdir / f"block_{block_ms}.toml"
                conf.write_text(f"[audio]\nblock_ms = {block_ms}\n")
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
                out["cost"][key] = {"block_ms": block_ms or 20, "stride": stride, "seconds": spoken.wall, "audio_s": len(audio) / RATE,
                                            "cpu_s": spoken.cpu, "us_per_s": 1e6 * spoken.cpu / spoken.wall,
                                            "cpu_percent": spoken.cpu_percent, "detections": detections}
                if key == "1":
                    out["idle"]["speech"] = {"seconds": spoken.wall, "cpu_s": spoken.cpu,
                                             "cpu_percent": spoken.cpu_percent, "vmhwm_mb": mem.hwm_mb,
                                             "vmrss_mb": mem.rss_mb}
                    clips = QUICK_LATENCY_SET if plan.latency_rounds == 0 else LATENCY_SET * plan.latency_rounds
                    out["latency"] = measure_latency(mic, daemon, clips)
                    out["latency"]["vmhwm_mb_after"] = procstat.memory(pid).hwm_mb
                    out["threads"] = thread_breakdown(threads_before, threads_after, spoken.wall, thread_names(pid))
            finally:
                code = daemon.stop()
            overflow_lines = [line for line in daemon.stderr.splitlines() if "event=ring_overflow" in line
                              or "event=input_overflow" in line]
            out["cost"].setdefault(key, {})["exit_code"] = code
            out["cost"][key]["overflow_log_lines"] = len(overflow_lines)
        out["import_memory"] = import_memory(mic.env)
        out["mic"] = {"feeder_resyncs": mic.stats["resyncs"], "feeder_max_late_ms": 1000 * mic.max_late_s}
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


def run(plan: Plan, progress: Callable[[str], None]) -> dict[str, Any]:
    result: dict[str, Any] = {"meta": machine(), "plan": dataclasses.asdict(plan), "targets": TARGETS}
    stream = build_stream(plan.stream_s, seed=0)
    progress(f"in-process: bare loop and Pipeline at strides {STRIDES} over {plan.stream_s:.0f} s of audio")
    inproc = InProcess(stream)
    inproc.measure_loops(plan.repeats)
    progress("in-process: stages")
    result["stages"] = inproc.stages()
    with tempfile.TemporaryDirectory(prefix="kws-speed-") as tmp:
        progress(f"daemon through the virtual microphone: strides {plan.daemon_strides}, "
                 f"{plan.silence_s:.0f} s silence + {plan.speech_s:.0f} s speech + latency")
        daemon = run_daemon_phases(plan, stream, Path(tmp))
        progress("in-process: bare loop and Pipeline again (after the live phases)")
        inproc.measure_loops(plan.repeats)
        progress(f"in-process: bare loop paced in real time, {plan.paced_s:.0f} s each in 20 ms and 100 ms blocks")
        result["bare_paced"] = inproc.measure_paced(plan.paced_s)
        progress(f"file throughput: kws-stream detect over {plan.file_s:.0f} s of audio, {', '.join(MODELS)}")
        result["file_throughput"] = file_throughput(plan, Path(tmp))
    result.update(inproc.loops_report())
    result["stream_s"] = inproc.audio_s
    for stride, cost in daemon["cost"].items():
        if "us_per_s" in cost:
            cost["ratio_to_bare"] = cost["us_per_s"] / result["bare"][str(cost["stride"])]["us_per_s"]
            cost["ratio_to_bare_plain"] = cost["us_per_s"] / result["bare_plain"][str(cost["stride"])]["us_per_s"]
            if stride == "1":
                cost["ratio_to_bare_paced_20ms"] = cost["us_per_s"] / result["bare_paced"]["20ms"]["us_per_s"]
    result["daemon"] = daemon["cost"]
    result["idle"] = {**daemon["idle"], "mic": daemon["mic"]}
    result["daemon_threads"] = daemon["threads"]
    result["import_memory"] = daemon["import_memory"]
    result["latency"] = daemon["latency"]
    progress("stride trade-off: shared clips through the real Pipeline")
    harness = accuracy_from_harness(STRIDES)
    result["stride_tradeoff"] = [
        {"stride": s, "bare_us_per_s": result["bare"][str(s)]["us_per_s"],
         "pipeline_us_per_s": result["pipeline"][str(s)]["us_per_s"],
         "daemon_us_per_s": result["daemon"].get(str(s), {}).get("us_per_s"),
         "inferences_per_s": result["bare"][str(s)]["inferences"] / inproc.audio_s,
         "shared_clips": clips_spotted(inproc.model, inproc.model_name, s),
         "accuracy": (harness or {}).get(str(s))}
        for s in STRIDES]
    result["meta"]["loadavg_end"] = os.getloadavg()[0]
    result["verdict"] = verdict(result)
    result["command_mode_default"] = inproc.command_mode
    return result


def verdict(r: dict[str, Any]) -> dict[str, Any]:
    ratio = r["daemon"].get("1", {}).get("ratio_to_bare")
    p95 = (r["latency"] or {}).get("p95_ms")
    rss = max(v["vmhwm_mb"] for k, v in r["idle"].items() if k in ("silence", "speech"))
    return {"daemon_ratio": {"value": ratio, "target": TARGETS["daemon_ratio"],
                             "met": ratio is not None and ratio <= TARGETS["daemon_ratio"]},
            "latency_p95_ms": {"value": p95, "target": TARGETS["latency_p95_ms"],
                               "met": p95 is not None and p95 <= TARGETS["latency_p95_ms"]},
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
    lines.append(f"| **kws-stream run (daemon), stride 1** | {_f(d1.get('us_per_s'))} | "
                 f"**{_f(d1.get('ratio_to_bare'), '{:.2f}')}** | target <= {TARGETS['daemon_ratio']}: "
                 f"{'met' if v['daemon_ratio']['met'] else 'NOT met'}; {_f(d1.get('seconds'), '{:.0f}')} s live |")
    for key, paced in r["bare_paced"].items():
        lines.append(f"| diagnostic: bare loop paced in real time, {paced['block_ms']} ms blocks | "
                     f"{_f(paced['us_per_s'])} | {_f(paced['us_per_s'] / r['bare']['1']['us_per_s'], '{:.2f}')} | "
                     f"same loop, sleeping until each block is due ({paced['seconds']:.0f} s); daemon / this = "
                     f"{_f(r['daemon'].get('1', {}).get('us_per_s', float('nan')) / paced['us_per_s'], '{:.2f}')} |")
    for key, d in r["daemon"].items():
        if key != "1" and "us_per_s" in d:
            s = str(d["stride"])
            lines.append(f"| kws-stream run, stride {s}, {d['block_ms']} ms capture blocks | {_f(d['us_per_s'])} | "
                         f"{_f(d['ratio_to_bare'], '{:.2f}')} | bare at stride {s}: {_f(r['bare'][s]['us_per_s'])}; "
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
        "", "| live | value | target |", "|---|---:|---|",
        f"| latency p50 / p95 / max (ms), {lat.get('matched')} of {lat.get('keywords_played')} keywords | "
        f"{_f(lat.get('p50_ms'))} / {_f(lat.get('p95_ms'))} / {_f(lat.get('max_ms'))} | p95 <= "
        f"{TARGETS['latency_p95_ms']:.0f}: {'met' if v['latency_p95_ms']['met'] else 'NOT met'} |",
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
              "and padded with 0.5 s of room noise, spotted exactly by the real Pipeline):", "",
              "| stride | inferences / s | bare | Pipeline | daemon | shared clips exact | accuracy harness |",
              "|---:|---:|---:|---:|---:|---:|---|"]
    for t in r["stride_tradeoff"]:
        sc = t["shared_clips"]
        lines.append(f"| {t['stride']} | {t['inferences_per_s']:.1f} | {_f(t['bare_us_per_s'])} | "
                     f"{_f(t['pipeline_us_per_s'])} | {_f(t['daemon_us_per_s'])} | {sc['exact']}/{sc['clips']} | "
                     f"{'-' if t['accuracy'] is None else json.dumps(t['accuracy'])} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a short smoke run of every section (about a minute)")
    p.add_argument("--json", type=Path, metavar="OUT", help="write all results as JSON")
    p.add_argument("--markdown", type=Path, metavar="OUT", help="write the tables as markdown")
    args = p.parse_args(argv)
    plan = Plan.make(args.quick)
    t0 = time.monotonic()
    result = run(plan, lambda msg: print(f"[{time.monotonic() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True))
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
