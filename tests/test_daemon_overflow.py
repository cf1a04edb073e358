"""Issue 25 item 3, in-process: a worker that fell a whole ring behind (an overloaded Pi).

The real model, Pipeline, ring, converter and worker thread; the capture side is this test
calling the session's callback, as PortAudio does. A machine whose worker got
no CPU for 10 s is one write of 10 s into a 4 s ring: the oldest 6 s are dropped.
What must hold: the loss is counted and logged once, the audio before and after the gap
are not spliced into one stream (a word pending before it is not reported late), words
after it are found with their true place on the timeline and the wall-clock time they
were spoken (not the time the worker got round to them).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.soak import RATE, Sounds
from kws_stream.backend import KeywordModel
from kws_stream.capture import RING_SECONDS, STALE_AFTER_S, CaptureSession
from kws_stream.events import Detection, EventBus
from kws_stream.models import load_manifest
from kws_stream.pipeline import Pipeline
from kws_stream.ringbuffer import RingBuffer
from kws_stream.sources import StreamConverter
from kws_stream.worker import Worker

BLOCK = RATE // 10  # what the callback writes at a time (block_ms = 100)
NO_OVERFLOW = SimpleNamespace(input_overflow=False)  # PortAudio's status flags of a callback


class ListSink:
    name = "list"

    def __init__(self) -> None:
        self.got: list[tuple[float, Detection]] = []
        self.arrived = threading.Condition()

    def start(self) -> None:
        pass

    def handle(self, detection: Detection) -> None:
        with self.arrived:
            self.got.append((time.time(), detection))
            self.arrived.notify_all()

    def close(self) -> None:
        pass


def epoch(iso: str | None) -> float:
    assert iso is not None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def sounds() -> Sounds:
    return Sounds()


@pytest.fixture
def worker(model_dir):
    spec = load_manifest().get("micronet-l")
    model = KeywordModel(model_dir / spec.file, spec.labels)
    sink = ListSink()
    w = Worker(Pipeline(model, "micronet-l", "mic:test"), EventBus([sink]).start())
    w.session = CaptureSession("test", RATE, 1, RingBuffer(int(RING_SECONDS * RATE), 1), StreamConverter(RATE, 1))
    w.sink = sink  # type: ignore[attr-defined]
    w.start()
    yield w
    w.request_stop(time.monotonic() + 10)
    assert w.join(30)
    w.bus.close()


def accounted(worker: Worker) -> float:
    """Samples the worker has either processed or counted as lost."""
    return worker.samples_processed + worker.ring_overflow_seconds * RATE


def write_and_wait(worker: Worker, audio: np.ndarray, block: int = 0, timeout: float = 60.0) -> float:
    """Write `audio` in blocks of `block` frames (0: in one go, as if the callback had
    written it all while the worker got no CPU); returns the wall time of the last write,
    after the worker has processed (or dropped and counted) all of it."""
    assert worker.session is not None
    step = block or len(audio)
    for start in range(0, len(audio), step):
        piece = audio[start:start + step]
        target = accounted(worker) + len(piece)
        written_at = time.time()
        worker.session.callback(piece.reshape(-1, 1), len(piece), None, NO_OVERFLOW)
        deadline = time.monotonic() + timeout
        while accounted(worker) < target - 1:
            assert time.monotonic() < deadline, "the worker did not catch up"
            time.sleep(0.005)  # polling the worker's counter: it offers no event for "processed"
    return written_at


def test_ten_seconds_without_cpu_drop_six_count_them_once_and_keep_the_timeline(worker, sounds, caplog):
    caplog.set_level(logging.WARNING, logger="kws_stream")
    clips = sounds.clips
    # Before the overload: 2 s of room tone, "yes", 2 s of room tone: found as usual.
    before = np.concatenate([sounds.room(2.0), clips["yes_1000ms.wav"], sounds.room(2.0)])
    write_and_wait(worker, before, BLOCK)
    # Then the worker gets no CPU for 10 s, while the callback writes 10 s into the 4 s
    # ring: "down" and 5 s of tone are lost; 1.5 s of tone, "no", 1.5 s of tone survive.
    word = clips["no_1000ms.wav"]
    starved = np.concatenate([clips["down.wav"], sounds.room(5.0), sounds.room(1.5), word, sounds.room(1.5)])
    written_at = write_and_wait(worker, starved)
    write_and_wait(worker, sounds.room(2.0), BLOCK)  # the pause after "no", and then some

    got = [d for _, d in worker.sink.got]
    assert [d.keyword for d in got] == ["yes", "no"], got
    lost = (len(starved) - worker.session.ring.capacity) / RATE
    assert worker.ring_overflow_seconds == pytest.approx(lost)
    # On the timeline "no" is where it was spoken (the lost audio counted): its 1 s window
    # ends within its clip, give or take a hop.
    word_s = len(word) / RATE
    word_at = (len(before) + len(starved)) / RATE - 1.5 - word_s
    assert word_at + 0.5 <= got[1].end <= word_at + word_s + 0.3, got[1]
    # Its wall time is when it was spoken (the newest sample came at `written_at`, 1.5 s of
    # tone after the clip), not when the worker got round to it.
    spoken = written_at - 1.5 - word_s
    assert spoken + 0.5 <= epoch(got[1].time) <= spoken + word_s + 0.3, got[1]
    lines = [r.getMessage() for r in caplog.records if "event=ring_overflow" in r.getMessage()]
    assert len(lines) == 1 and f"lost_s={lost:.2f}" in lines[0] and "caught_up" in lines[0], lines


def test_a_word_cut_by_the_gap_is_not_completed_by_the_audio_after_it(worker, sounds):
    # The first 0.6 s of "stop" (a candidate waiting for its pause) and then the gap: spliced,
    # the tone after the gap would pass for its pause and report it seconds late.
    write_and_wait(worker, sounds.room(2.0), BLOCK)
    write_and_wait(worker, sounds.clips["yes_no_go_stop.wav"][3 * RATE:3 * RATE + int(0.6 * RATE)], BLOCK)
    assert worker.sink.got == []
    write_and_wait(worker, np.concatenate([np.zeros(5 * RATE, np.int16), sounds.room(4.0)]))
    write_and_wait(worker, sounds.room(2.0), BLOCK)
    assert worker.sink.got == []
    assert worker.ring_overflow_episodes == 1


def test_a_backlog_that_waited_upstream_is_dropped_down_to_the_ring(worker, sounds):
    # A starved process's callback starves too: the audio waits in PulseAudio and then comes
    # in ordinary blocks the worker keeps up with, so the ring never overflows. Audio older
    # than STALE_AFTER_S when it reaches the worker is dropped all the same, counted as lost.
    write_and_wait(worker, sounds.room(1.0), BLOCK)
    session = worker.session
    assert session is not None
    session.anchor -= 10.0  # as if that first second had been captured 10 s ago: 10 s of backlog
    backlog = np.concatenate([sounds.clips["down.wav"], sounds.room(10.0 - len(sounds.clips["down.wav"]) / RATE)])
    write_and_wait(worker, backlog, BLOCK)
    write_and_wait(worker, sounds.room(2.0), BLOCK)
    assert worker.sink.got == []  # "down", 9 s old when it came, is not reported
    assert worker.ring_overflow_episodes == 1
    # At least the backlog beyond STALE_AFTER_S is lost; a little more on a slow machine,
    # where the first second took a while to write and the backlog aged meanwhile.
    assert 10.0 - STALE_AFTER_S <= worker.ring_overflow_seconds <= 10.0 - STALE_AFTER_S + 2.0
