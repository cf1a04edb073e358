"""The daemon's audio worker: takes what the capture session's ring holds, converts it to
16 kHz mono, runs the Pipeline on it in SLICEs and publishes the detections.

A stream, for the Pipeline, is continuous audio. Two things end one live:

- the device goes away (or is replaced): what it delivered is finished as `detect`
  finishes a file (its end counts as the pause after a last word), then a new Pipeline
  starts on the next device's audio;
- the worker falls a whole ring behind (an overloaded machine): the ring drops the oldest
  audio (counted), and so does the worker for audio that reaches it older than
  `STALE_AFTER_S` (a starved callback leaves the backlog upstream, in PulseAudio). The
  audio before the gap and after it are not one stream, so the Pipeline's state is
  dropped without finishing (a word cut by the gap is not reported: its pause was
  never heard) and a new Pipeline starts after the gap. One log line per
  episode, when the worker has caught up again (and every minute while it has not).

Detection times stay on one timeline over all streams: `start`/`end` count seconds of
captured audio since the worker started, lost audio included; `time` is the wall clock of
the moment the word's window ended was captured (the session's capture clock, see
`CaptureSession.callback`), not of the moment it was reported, so a detection the worker
reports while catching up carries the time it was spoken.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from .capture import CaptureSession
from .events import Detection, EventBus
from .features import SAMPLE_RATE
from .pipeline import Pipeline, PipelineParams
from .record import Recorder

log = logging.getLogger(__name__)

WORKER_WAIT = 0.25  # s the worker waits for audio before looking around again
SLICE = 1600  # samples (0.1 s) fed per pipeline call: a backlog never hides a stop request
CAUGHT_UP_S = 1.0  # an overflow episode ends with a read shorter than this, nothing lost
OVERFLOW_LOG_EVERY_S = 60.0  # an episode that does not end is logged this often


def utc_iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Worker:
    """Takes audio from the current capture session and runs the pipeline on it."""

    def __init__(self, pipeline: Pipeline, bus: EventBus, recorder: Recorder | None = None) -> None:
        self.pipeline = pipeline
        self.recorder = recorder  # KWS_STREAM_RECORD: what each session captured, to a file
        self.bus = bus
        self.session: CaptureSession | None = None  # swapped by the supervisor
        self.heartbeat = time.monotonic()  # refreshed every SLICE: a worker that is only behind is alive
        self.audio_flowing = threading.Event()
        self.stop = threading.Event()
        self._drain_deadline = float("inf")  # monotonic time; set by request_stop
        self._drain_cut = False
        self.detections = 0
        self.detections_by_keyword: Counter[str] = Counter()
        self.ring_overflow_seconds = 0.0
        self.ring_overflow_episodes = 0
        self._episode_lost_s = 0.0  # lost in the overflow episode under way
        self._episode_logged = 0.0  # monotonic time of its last log line
        self._offset_s = 0.0  # timeline seconds before the current Pipeline's stream
        self._samples_before = 0  # samples earlier Pipelines processed (stats)
        self._fed_until = math.nan  # wall-clock time the newest sample fed was captured
        self._pending: PipelineParams | None = None
        self._pending_lock = threading.Lock()
        self._bus_lock = threading.Lock()  # held only to publish or to swap the bus, never to close one
        # Joined at shutdown; daemon=True only so that a worker stuck in native code cannot
        # keep the process alive past its stop budget.
        self._thread = threading.Thread(target=self._run, name="worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def samples_processed(self) -> int:
        """16 kHz samples fed to the pipelines so far (all streams)."""
        return self._samples_before + self.pipeline.features.samples_pushed

    def request_stop(self, drain_deadline: float) -> None:
        """Finish the audio already captured, but only until `drain_deadline`."""
        self._drain_deadline = drain_deadline
        self.stop.set()
        session = self.session
        if session is not None:
            session.ring.wake()

    def reconfigure(self, params: PipelineParams) -> None:
        """Hand new pipeline parameters to the worker thread (applied between blocks; a newer
        change replaces one not applied yet)."""
        with self._pending_lock:
            self._pending = params

    def swap_bus(self, bus: EventBus) -> EventBus:
        """Detections go to `bus` from now on; returns the old one for the caller to close
        (off the audio path)."""
        with self._bus_lock:
            old, self.bus = self.bus, bus
        return old

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        current: CaptureSession | None = None
        while True:
            self.heartbeat = time.monotonic()
            self._apply_pending()
            latest = self.session
            if current is not None and latest is not current:
                self._process(current, *current.ring.read(0))  # drain what the old device delivered
                self._new_stream(finish=True)  # and finish it, as `detect` finishes a file
                current = None
            if latest is None:
                if self.stop.wait(WORKER_WAIT):
                    return
                continue
            if current is not latest and self.recorder is not None:
                self.recorder.start(latest.rate, latest.channels)
            current = latest
            block, lost = current.ring.read(0 if self.stop.is_set() else WORKER_WAIT)
            self._process(current, block, lost)
            if self.stop.is_set() and (len(block) == 0 or self._drain_cut):
                # The end of the captured audio counts as the pause after a last command.
                self._publish(self.pipeline.finish())
                self._log_overflow_episode(final=True)
                if self.recorder is not None:
                    self.recorder.close()
                return

    def _process(self, session: CaptureSession, block: np.ndarray, lost: int) -> None:
        """`block` read from the ring, `lost` frames dropped just before it."""
        stale = session.stale_frames(session.ring.read_end - len(block), len(block)) if len(block) else 0
        if stale:  # it waited upstream of the ring: as lost as what the ring dropped
            block, lost = block[stale:], lost + stale
        if lost:
            self._overflowed(lost / session.rate)
        elif self._episode_lost_s and len(block) < CAUGHT_UP_S * session.rate:
            self._log_overflow_episode(final=True)
        if len(block) == 0:
            return
        if self.recorder is not None:
            self.recorder.write(block)
        audio = session.converter.convert(block)
        first_frame = session.ring.read_end - len(block)  # this block's place in the session
        for start in range(0, len(audio), SLICE):
            if self.stop.is_set() and time.monotonic() > self._drain_deadline:
                self._drain_cut = True
                log.warning("event=stop_drain_cut dropped_s=%.2f note=stop_budget_spent",
                            (len(audio) - start) / SAMPLE_RATE)
                return
            piece = audio[start : start + SLICE]
            self._fed_until = session.wall_time(first_frame + (start + len(piece)) * session.rate / SAMPLE_RATE)
            self._publish(self.pipeline.feed(piece))
            self.heartbeat = time.monotonic()
        self.audio_flowing.set()

    def _overflowed(self, lost_s: float) -> None:
        """The ring dropped `lost_s` s before the block just read: a gap in the stream."""
        self.ring_overflow_seconds += lost_s
        if not self._episode_lost_s:
            self.ring_overflow_episodes += 1
            self._episode_logged = time.monotonic()
        self._episode_lost_s += lost_s
        self._new_stream(finish=False, gap_s=lost_s)
        if time.monotonic() - self._episode_logged >= OVERFLOW_LOG_EVERY_S:
            self._log_overflow_episode(final=False)

    def _log_overflow_episode(self, final: bool) -> None:
        if not self._episode_lost_s:
            return
        log.warning("event=ring_overflow lost_s=%.2f total_lost_s=%.2f episodes=%d state=%s",
                    self._episode_lost_s, self.ring_overflow_seconds, self.ring_overflow_episodes,
                    "caught_up" if final else "still_behind")
        self._episode_logged = time.monotonic()
        if final:
            self._episode_lost_s = 0.0

    def _new_stream(self, finish: bool, gap_s: float = 0.0) -> None:
        """End the current Pipeline's stream (reporting what its end completes when
        `finish`) and start a new one `gap_s` s later on the timeline."""
        old = self.pipeline
        if finish:
            self._publish(old.finish())
        pushed = old.features.samples_pushed
        if pushed == 0 and not gap_s:
            return  # nothing heard since the last new stream
        self._offset_s += pushed / SAMPLE_RATE + gap_s
        self._samples_before += pushed
        new = Pipeline(old.model, old.model_name, old.source, old.params, judge=old.judge)
        new.inference_observer = old.inference_observer
        self.pipeline = new

    def _publish(self, detections: list[Detection]) -> None:
        if not detections:
            return
        heard = self.pipeline.features.samples_pushed / SAMPLE_RATE
        fed_until = self._fed_until if math.isfinite(self._fed_until) else time.time()  # no capture clock yet
        for detection in detections:
            spoken = fed_until - max(0.0, heard - detection.end)  # when the window's end was captured
            detection = replace(detection, start=round(detection.start + self._offset_s, 6),
                                end=round(detection.end + self._offset_s, 6), time=utc_iso(spoken))
            self.detections += 1
            self.detections_by_keyword[detection.keyword] += 1
            with self._bus_lock:
                self.bus.publish(detection)  # never blocks: a full sink queue drops and counts

    def _apply_pending(self) -> None:
        with self._pending_lock:
            params, self._pending = self._pending, None
        if params is not None:
            self.pipeline.reconfigure(params)
