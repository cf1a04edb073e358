"""Detections and the bus that hands them to sinks.

Each sink gets its own bounded queue and thread, so a slow or blocked sink (a
full pipe, a dead broker) never stalls the audio path; overflows are counted and
logged, never silent.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import asdict, dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

SINK_QUEUE_SIZE = 256


@dataclass(frozen=True)
class Detection:
    """One reported keyword. `start`/`end`: seconds from the start of the audio, the
    1 s window whose smoothed score fired. `time`: wall clock (ISO 8601 UTC), live only."""

    keyword: str
    score: float
    start: float
    end: float
    source: str
    model: str
    time: str | None = None

    def event(self) -> dict[str, Any]:
        """The public JSON-lines schema (see README)."""
        data = asdict(self)
        data["score"] = round(self.score, 4)
        data["start"] = round(self.start, 3)
        data["end"] = round(self.end, 3)
        if self.time is None:
            del data["time"]
        return data

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> "Detection":
        return cls(**{k: data[k] for k in ("keyword", "score", "start", "end", "source", "model")},
                   time=data.get("time"))


class Sink(Protocol):
    """Where detections go. `handle` may raise `SinkClosed` to say it can take no more."""

    name: str

    def handle(self, detection: Detection) -> None: ...

    def close(self) -> None: ...


class SinkClosed(Exception):
    """The sink's destination is gone for good (e.g. stdout closed by the reader)."""


_STOP = object()


class _SinkWorker:
    def __init__(self, sink: Sink, on_closed: threading.Event) -> None:
        self.sink = sink
        self.dropped = 0
        self.errors = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=SINK_QUEUE_SIZE)
        self._on_closed = on_closed
        self._thread = threading.Thread(target=self._run, name=f"sink-{sink.name}", daemon=True)
        self._thread.start()

    def put(self, detection: Detection) -> None:
        try:
            self._queue.put_nowait(detection)
        except queue.Full:
            self.dropped += 1
            log.warning("event=sink_overflow sink=%s dropped=%d", self.sink.name, self.dropped)

    def _run(self) -> None:
        closed = False
        while (item := self._queue.get()) is not _STOP:
            if closed:
                continue
            try:
                self.sink.handle(item)  # type: ignore[arg-type]
            except SinkClosed:
                closed = True
                self._on_closed.set()
            except Exception as exc:  # a sink bug must not end the spotter
                self.errors += 1
                log.error("event=sink_error sink=%s error=%r", self.sink.name, exc)

    def stop(self, timeout: float) -> None:
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.error("event=sink_stuck sink=%s queued=%d", self.sink.name, self._queue.qsize())
            return
        self._thread.join(timeout)
        try:
            self.sink.close()
        except SinkClosed:
            self._on_closed.set()


class EventBus:
    """Fans detections out to every sink, each behind its own bounded queue."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sink_closed = threading.Event()
        """Set when a sink's destination went away (the CLI then stops quietly)."""
        self._workers = [_SinkWorker(s, self.sink_closed) for s in sinks]

    def publish(self, detection: Detection) -> None:
        for worker in self._workers:
            worker.put(detection)

    @property
    def dropped(self) -> int:
        return sum(w.dropped for w in self._workers)

    def sink_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """(errors, dropped) per sink name, for metrics."""
        return ({w.sink.name: w.errors for w in self._workers}, {w.sink.name: w.dropped for w in self._workers})

    def close(self, timeout: float = 2.0) -> None:
        """Deliver what is queued, then close every sink."""
        for worker in self._workers:
            worker.stop(timeout)
