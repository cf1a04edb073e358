"""What every part of the speed benchmark shares: the plan, the audio, the models, CPU timing."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import kws_stream  # noqa: F401  (pins OPENBLAS/OMP/MKL threads before numpy is imported)
from kws_stream import config as cfg
from kws_stream.features import MICRONET
from kws_stream.models import default_model_dir, load_manifest, resolve
from kws_stream.pipeline import PipelineParams
from testsupport.audio import NOISE_CLIP, read_wav

RATE = MICRONET.sample_rate
DEFAULT_BLOCK_MS = cfg.AudioConfig().block_ms  # the daemon's default capture block (100 ms)
BLOCK = RATE * DEFAULT_BLOCK_MS // 1000  # samples per capture block, as the daemon feeds the Pipeline
PACED_BLOCKS_MS = (20, 50, 100)  # the paced bare-loop diagnostic
STRIDES = (1, 2, 4, 8)
MODELS = ("micronet-l", "micronet-m")
KEYWORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
RSS_TARGET_MB = 60.0  # the README's target: peak RSS (VmHWM) of `kws-stream run` at the defaults
TARGETS = {"daemon_ratio": 1.25, "latency_p95_ms": 200.0, "command_latency_p95_ms": 400.0, "rss_mb": RSS_TARGET_MB}

KEYWORD_CLIPS = ("keywords/yes.wav", "keywords/down.wav", "keywords/right.wav", "keywords/yes_1000ms.wav",
                 "keywords/no_1000ms.wav", "keywords/right_left_up.wav", "keywords/yes_no_go_stop.wav")
NEGATIVE_CLIPS = ("negatives/another_door.wav", "negatives/another_engineer.wav", "negatives/i_tell_you.wav",
                  "negatives/testing_routine.wav", "negatives/marvin_617de221_0.wav",
                  "negatives/silence_1000ms.wav", "negatives/near_silence.wav", "negatives/noise_1000ms.wav")


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
    def make(cls, quick: bool) -> Plan:
        if not quick:
            return cls(quick=False)
        return cls(quick=True, stream_s=12.0, repeats=1, warmup_s=1.0, silence_s=5.0, speech_s=6.0,
                   latency_keywords=4, daemon_strides=(1,), block_variants=(), other_stride_s=3.0, file_s=60.0,
                   paced_s=3.0)


# ----------------------------------------------------------------------------- audio


def build_stream(seconds: float, seed: int = 0) -> np.ndarray:
    """Keyword clips and spoken negatives in random order, gain and spacing, with 0.3-1.2 s
    of room noise between them; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    clips = [read_wav(n).astype(np.float32) for n in KEYWORD_CLIPS + NEGATIVE_CLIPS]
    noise = read_wav(NOISE_CLIP).astype(np.float32)
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



def kws_command() -> list[str]:
    """This interpreter's kws-stream (never another install found on PATH)."""
    return [sys.executable, "-m", "kws_stream"]
