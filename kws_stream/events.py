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
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)

SINK_QUEUE_SIZE = 256


@dataclass(frozen=True)
class Detection:
    """One reported keyword. `start`/`end`: seconds from the start of the audio, the
    1 s window whose smoothed score fired. `time`: wall clock (ISO 8601 UTC), live only.
    `threshold`: the score this keyword needed when it fired (the pipeline's setting at that
    moment), so that consumers (MQTT's Hermes `currentSensitivity`) need no copy of the config."""

    keyword: str
    score: float
    start: float
    end: float
    source: str
    model: str
    time: str | None = None
    threshold: float | None = None

    def event(self) -> dict[str, Any]:
        """The public JSON-lines schema (see README)."""
        data = asdict(self)
        data["score"] = round(self.score, 4)
        data["start"] = round(self.start, 3)
        data["end"] = round(self.end, 3)
        for optional in ("time", "threshold"):
            if data[optional] is None:
                del data[optional]
        return data

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> Detection:
        return cls(**{k: data[k] for k in ("keyword", "score", "start", "end", "source", "model")},
                   time=data.get("time"), threshold=data.get("threshold"))


class Sink(Protocol):
    """Where detections go. `handle` may raise `SinkClosed` to say it can take no more.
    `start` opens what the sink needs (connections, threads); `close` releases all of it,
    also when `start` was never called."""

    name: str

    def start(self) -> None: ...

    def handle(self, detection: Detection) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Handover(Sink, Protocol):
    """A Sink that can keep detections it could not deliver (MQTT while its broker is away)
    and pass them to the sink that replaces it at a reload: the bus, closing the old sink,
    hands `undelivered()` to the new sink of the same name through `adopt()`, before that
    one starts. A sink without these (stdout) has nothing left once closed. Declare it as
    a base class (`class MqttSink(Handover)`), so that mypy checks both signatures."""

    def undelivered(self) -> list[Detection]:
        """After `close()`: what was not delivered, oldest first; it stops being this sink's."""
        ...

    def adopt(self, detections: list[Detection]) -> None:
        """Before `start()`: take over a predecessor's undelivered detections, ahead of any
        this sink already holds (they are older)."""
        ...


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

    def start(self) -> None:
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
        if self._thread.is_alive():
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
    """Fans detections out to every sink, each behind its own bounded queue.

    Nothing runs until `start()` (or `with`): detections published before it wait in the
    queues. `close()` delivers what is queued, then closes every sink, started or not.
    """

    def __init__(self, sinks: list[Sink]) -> None:
        self.sink_closed = threading.Event()
        """Set when a sink's destination went away (the CLI then stops quietly)."""
        self._workers = [_SinkWorker(s, self.sink_closed) for s in sinks]
        self._started = False

    def start(self) -> EventBus:
        if not self._started:
            self._started = True
            for worker in self._workers:
                worker.sink.start()
                worker.start()
        return self

    def __enter__(self) -> EventBus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def sinks(self) -> list[Sink]:
        return [w.sink for w in self._workers]

    def publish(self, detection: Detection) -> None:
        for worker in self._workers:
            worker.put(detection)

    @property
    def dropped(self) -> int:
        return sum(w.dropped for w in self._workers)

    def sink_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """(errors, dropped) per sink name, for metrics: dropped by a full queue, plus what the
        sink itself dropped (its `dropped`, if it has one: a stdout nobody reads)."""
        return ({w.sink.name: w.errors for w in self._workers},
                {w.sink.name: w.dropped + getattr(w.sink, "dropped", 0) for w in self._workers})

    def close(self, timeout: float = 2.0, successor: EventBus | None = None) -> None:
        """Deliver what is queued, then close every sink. With a `successor` (a reload that
        replaced the sinks), what a closed `Handover` sink could not deliver (MQTT while its
        broker is away) is handed to the successor's sink of the same name."""
        heirs = {s.name: s for s in successor.sinks} if successor is not None else {}
        for worker in self._workers:
            worker.stop(timeout)
            old, heir = worker.sink, heirs.get(worker.sink.name)
            if isinstance(old, Handover) and isinstance(heir, Handover):
                left = old.undelivered()
                if left:
                    heir.adopt(left)
                    log.info("event=sink_handover sink=%s detections=%d", old.name, len(left))
