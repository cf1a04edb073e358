"""In-process sections: bare and Pipeline CPU per stride, per-stage costs, clips spotted."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

import kws_stream  # noqa: F401  (pins OPENBLAS/OMP/MKL threads before numpy is imported)
from kws_stream.backend import KeywordModel
from kws_stream.capture import RING_SECONDS, CaptureSession
from kws_stream.decision import KeywordDecider
from kws_stream.events import Detection, EventBus
from kws_stream.features import MICRONET, FeatureWindow, MfccExtractor
from kws_stream.ringbuffer import RingBuffer
from kws_stream.sinks import StdoutSink
from kws_stream.sources import StreamConverter
from testsupport.audio import read_wav

from .accuracy_clips import expected_from_name
from .speed_bare import BareModel, bare_run, command_params, make_command_gate, pipeline_run, plain
from .speed_common import (
    BLOCK,
    DEFAULT_BLOCK_MS,
    KEYWORD_CLIPS,
    KEYWORDS,
    NEGATIVE_CLIPS,
    NOISE_CLIP,
    PACED_BLOCKS_MS,
    RATE,
    STRIDES,
    cpu_timed,
    default_params,
    model_path,
    summarise,
)


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
                        lambda prm=prm: bare_run(self.audio, self.bare_model, self.extractor, prm))
                    self.cpu[kind][stride].append(cpu)
                    self.decisions[kind][stride] = [(k, e) for k, _, e in decisions]
                    self.inferences[stride] = inferences
                real = lambda params=params: pipeline_run(self.audio, self.model, self.model_name, params)  # noqa: E731
                cpu, (found, _) = cpu_timed(real)
                self.cpu["pipeline"][stride].append(cpu)
                self.decisions["pipeline"][stride] = [(d.keyword, round(d.end * RATE)) for d in found]

    def measure_paced(self, seconds: float, blocks_ms: Sequence[int] = PACED_BLOCKS_MS) -> dict[str, Any]:
        """Diagnostic: the bare loop (stride 1) paced in real time, as a live spotter runs."""
        audio = self.audio[: int(seconds * RATE)]
        out = {}
        for ms in blocks_ms:
            cpu, _ = cpu_timed(lambda ms=ms: bare_run(audio, self.bare_model, self.extractor, default_params(1),
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
                for hop in fw.push(b):
                    fw.frame(hop.number)

        cpu_mfcc, _ = cpu_timed(mfcc)
        out["mfcc"] = {"us_per_s": per_s(cpu_mfcc),
                       "what": f"FeatureWindow.push of {DEFAULT_BLOCK_MS} ms blocks and each hop's frame"}

        fw = FeatureWindow(self.extractor)
        for b in blocks:
            for hop in fw.push(b):
                if hop.number + 1 >= MICRONET.frames:
                    windows.append(fw.window(hop.number).copy())
                    ends.append(hop.end_sample)

        def infer() -> list[np.ndarray]:
            return [self.model.probabilities(w) for w in windows]

        cpu_inf, probs = cpu_timed(infer)
        out["inference"] = {"us_per_s": per_s(cpu_inf), "per_call_us": 1e6 * cpu_inf / max(1, len(windows)),
                            "calls": len(windows), "what": "KeywordModel.probabilities per window (stride 1)"}

        def raw_invoke() -> None:
            interp = self.bare_model.interpreter
            q = np.zeros(MICRONET.input_shape, dtype=np.int8)
            for _ in windows:
                interp.set_tensor(self.bare_model.input_index, q)
                interp.invoke()
                interp.get_tensor(self.bare_model.output_index)

        cpu_raw, _ = cpu_timed(raw_invoke)
        out["interpreter_only"] = {"us_per_s": per_s(cpu_raw), "per_call_us": 1e6 * cpu_raw / max(1, len(windows)),
                                   "what": "set_tensor + invoke + get_tensor alone (part of inference)"}

        decider = KeywordDecider(self.model.labels, default_params().decision)

        def decide() -> int:
            return sum(decider.update(p, e, RATE) is not None for p, e in zip(probs, ends, strict=False))

        cpu_dec, fired = cpu_timed(decide)
        out["decision"] = {"us_per_s": per_s(cpu_dec), "what": "KeywordDecider.update per inference"}

        command = command_params(default_params())
        if command is not None:  # command mode: every hop's level, and the candidates, through the gate
            gate = make_command_gate(default_params(), self.model.labels)
            hop = MICRONET.hop_samples
            hops = [(audio[e - hop : e], e) for e in range(MICRONET.frame_samples, len(audio) + 1, hop)]
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
            bus = EventBus([StdoutSink("json", stream=devnull)]).start()

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
    noise = read_wav(NOISE_CLIP)
    pad = np.resize(noise, RATE // 2)
    ok = total = 0
    wrong: list[str] = []
    for clip_name in KEYWORD_CLIPS + NEGATIVE_CLIPS:
        clip = read_wav(clip_name)
        for variant, audio in (("", clip), ("+noise", np.concatenate((pad, clip, pad)))):
            found, _ = pipeline_run(audio, model, name, default_params(stride))
            got = tuple(d.keyword for d in found)
            total += 1
            if got == expected_from_name(Path(clip_name), KEYWORDS):
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
