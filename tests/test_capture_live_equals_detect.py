"""Issue 15, soak item 1: `down.wav` after 5.42 s of room tone (soak seed 0, command 65)
was missed live twice but found by `detect`.

The live path (PortAudio-sized blocks -> RingBuffer -> StreamConverter -> the daemon's
Worker, fed in SLICEs) and `detect` (WavFileSource blocks) run the same Pipeline on the
same samples, so they must agree whatever the block sizes: the first test proves it on the
soak's own audio. What differs live is the SIGHUP the soak sends at 1260 s, within
0.1 s of that word's end (its drift-corrected start was 1259.11 s), changing the threshold
0.65 -> 0.70: `Pipeline.reconfigure` then built a new CommandGate, which dropped the word's
pending candidate, its loudness history and its noise floor. The second test reproduces
that; a reload now retunes the gate and the decider, keeping what they heard.

Everything is real: the model, the soak's clips and room tone (benchmarks.soak plan() and
Sounds, seed 0), the ring, the converter, the worker thread and an in-memory sink.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile

from benchmarks.soak import RATE, Sounds, plan
from kws_stream.backend import KeywordModel
from kws_stream.capture import CaptureSession
from kws_stream.decision import DecisionParams
from kws_stream.detect import detect_files
from kws_stream.events import Detection, EventBus
from kws_stream.models import load_manifest
from kws_stream.pipeline import Pipeline, PipelineParams
from kws_stream.ringbuffer import RingBuffer
from kws_stream.sources import StreamConverter
from kws_stream.worker import SLICE, Worker

MISSED = 65  # the soak's command: down.wav after 5.42 s of room tone
THRESHOLD_THEN = 0.65  # the soak's threshold at that moment (SIGHUP 5 set it)
THRESHOLD_AFTER = 0.70  # what SIGHUP 7, at the word's end, set it to


def soak_audio() -> tuple[np.ndarray, int, int]:
    """The soak's stream (seed 0) from 6 s before command 65's clip to 3 s into the next
    pause; returns (audio, clip start, clip end) in samples. 6 s is more than the command
    gate's history (4 s) and noise floor (2 s) need."""
    sounds = Sounds()
    parts: list[np.ndarray] = []
    offset = 0
    for cmd in plan(0, MISSED + 2, 1.0, 60.0):
        pause = sounds.pause(cmd.pause_s, cmd.pause_kind, offset)
        offset += int(cmd.pause_s * RATE)  # as the soak's feeder advances the room tone
        parts += [pause, sounds.clips[cmd.clip]]
    assert plan(0, MISSED + 1, 1.0, 60.0)[MISSED].clip == "down.wav"
    clip = len(parts[2 * MISSED + 1])
    start = sum(map(len, parts[: 2 * MISSED + 1]))
    stream = np.concatenate(parts[: 2 * MISSED + 2] + [parts[2 * MISSED + 2][: 3 * RATE]])
    first = start - 6 * RATE
    return stream[first:], start - first, start - first + clip


@pytest.fixture(scope="module")
def model(model_dir: Path) -> KeywordModel:
    spec = load_manifest().get("micronet-l")
    return KeywordModel(model_dir / spec.file, spec.labels)


def params(threshold: float) -> PipelineParams:
    return PipelineParams(decision=DecisionParams(threshold=threshold))


class ListSink:
    """A real sink that keeps what it is given (the test reads it after the bus closed)."""

    name = "list"

    def __init__(self) -> None:
        self.detections: list[Detection] = []

    def start(self) -> None:
        pass

    def handle(self, detection: Detection) -> None:
        self.detections.append(detection)

    def close(self) -> None:
        pass


def live(model: KeywordModel, audio: np.ndarray, seed: int) -> list[Detection]:
    """The daemon's worker on `audio` written to its ring in random PortAudio-like blocks."""
    sink = ListSink()
    bus = EventBus([sink]).start()
    worker = Worker(Pipeline(model, "micronet-l", "mic:test", params(THRESHOLD_THEN)), bus)
    # a ring that holds the whole stream: no pacing needed, and nothing is lost to overflow
    session = CaptureSession("test", RATE, 1, RingBuffer(len(audio) + 1, 1), StreamConverter(RATE, 1))
    worker.session = session
    worker.start()
    rng = np.random.default_rng(seed)
    position = 0
    while position < len(audio):
        n = int(rng.integers(1, 2400))
        session.ring.write(audio[position:position + n].reshape(-1, 1))
        position += n
    worker.request_stop(drain_deadline=float("inf"))
    assert worker.join(60), "the worker did not finish the audio"
    bus.close(timeout=10)
    return sink.detections


def summary(detections: list[Detection]) -> list[tuple[str, float, float]]:
    return [(d.keyword, round(d.end, 3), round(d.score, 5)) for d in detections]


def test_the_live_path_and_detect_report_the_same_on_the_soaks_audio(model, tmp_path):
    audio, start, end = soak_audio()
    wav = tmp_path / "soak_cmd65.wav"
    scipy.io.wavfile.write(wav, RATE, audio)
    offline = params(THRESHOLD_THEN)
    by_detect = summary([d for d in detect_files([wav], model, "micronet-l", offline)
                         if isinstance(d, Detection)])
    assert [k for k, e, _ in by_detect if start / RATE <= e <= end / RATE + 1] == ["down"], by_detect
    for seed in (1, 2):
        assert summary(live(model, audio, seed)) == by_detect
    for block in (7, 320, SLICE, 8000):  # and the Pipeline alone, whatever it is fed in
        pipeline = Pipeline(model, "micronet-l", str(wav), offline)
        found = [d for i in range(0, len(audio), block) for d in pipeline.feed(audio[i:i + block])]
        assert summary(found + pipeline.finish()) == by_detect, block


@pytest.mark.parametrize("after_end_s", [0.0, 0.1])
def test_a_threshold_reload_at_the_end_of_a_word_keeps_the_word(model, after_end_s):
    audio, start, end = soak_audio()
    cut = end + int(after_end_s * RATE)
    pipeline = Pipeline(model, "micronet-l", "mic:test", params(THRESHOLD_THEN))
    found = pipeline.feed(audio[:cut])
    pipeline.reconfigure(params(THRESHOLD_AFTER))  # what the worker does between two blocks
    found += pipeline.feed(audio[cut:]) + pipeline.finish()
    assert "down" in [d.keyword for d in found if start / RATE <= d.end <= end / RATE + 1]
