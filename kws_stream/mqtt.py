"""The MQTT sink: detections to a broker, as the JSON-lines schema and as Hermes messages.

Each detection is published twice, in this order, with the configured QoS:

- `<topic_prefix>/detection`: `Detection.event()`, the same object `detect` prints;
- `hermes/hotword/<keyword>/detected`: the Hermes payload Rhasspy and Node-RED flows read:

  - `modelId`: the keyword (`up`): one model spots ten keywords, and Rhasspy's own services use
    the per-keyword id here (Porcupine: the keyword file, Pocketsphinx: the keyphrase), the same
    as the `wakewordId` in the topic;
  - `modelVersion`: the acoustic model that fired: `micronet-l`, or `micronet-l@<version>`;
  - `modelType`: `"universal"` (a speaker-independent model, not trained on the user's voice);
  - `currentSensitivity`: the threshold that keyword needed when it fired (`Detection.threshold`),
    as Rhasspy's Pocketsphinx service reports its keyphrase threshold (higher = stricter here);
  - `siteId`: `[mqtt] site_id`.

  `sessionId`, `sendAudioCaptured` and `lang` are left out: kws-stream starts no dialogue
  session, captures no audio for ASR and has no language setting; absent means "let the dialogue
  manager decide" (an auto-generated session id), exactly as when Rhasspy's services omit them.

Three parts: this sink (queueing and the flusher thread), `mqtt_link.Link` (paho: settings,
connection, its callbacks and their log lines) and `mqtt_delivery.Delivery` (what is pending, in
flight, acknowledged or handed over: plain state, tested without a broker).

Nothing connects and no thread runs until `start()`; `close()` stops and releases everything
(paho's thread, its socket and its internal wake-up socket pair). Threads, each joined by `close()`:
- paho's network thread (`loop_start`) connects, reconnects with backoff (1 s doubling to 30 s)
  and calls the link's callbacks, which never take a lock held while calling paho: they append
  to the link's event deque and wake the flusher (paho holds its own locks while calling them);
- the flusher thread is the only caller of `publish`: it applies those events to the delivery
  state under the sink's lock and publishes, with the lock released, what that state lets it:
  in order, while connected, below `WINDOW` messages unacknowledged.

`handle()` (called by the event bus's thread for this sink) only queues the detection and wakes
the flusher, so it returns at once whether the broker is up, down or unreachable. While the
broker is away, detections wait (at most `queue_size`; when full the oldest is dropped, counted
and logged) and are published in order after the reconnect. Messages that paho had already sent
(QoS >= 1) but not seen acknowledged when the connection dropped are resent by paho first; the
flusher waits for their acknowledgements before publishing newer ones, so the order holds
across reconnects (QoS 1 may, as always, deliver a message twice). QoS 0 is at most once: what
was in flight when the connection broke is lost (counted and logged, `mqtt_lost`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .events import Detection, Handover
from .mqtt_delivery import WINDOW, Delivery
from .mqtt_link import Link, MqttError, checked_password

__all__ = ["CLOSE_TIMEOUT", "MqttCounts", "MqttError", "MqttSink", "checked_password"]  # the last two: preflight

if TYPE_CHECKING:
    from .config import MqttConfig

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 1.0  # s close() waits for queued detections to be acknowledged


@dataclass(frozen=True)
class MqttCounts:
    """`published`: detections whose messages were all acknowledged by the broker (QoS 0:
    written to the socket); `dropped`: pushed out of the full queue while the broker was away;
    `lost`: QoS 0, in flight when the connection broke; `queued`: not yet acknowledged, waiting
    or in flight; `reconnects`: successful connections after the first."""

    published: int
    dropped: int
    lost: int
    queued: int
    reconnects: int


class MqttSink(Handover):
    """Publishes detections to an MQTT broker; see the module docstring for topics and payloads.
    `counts()` reads its counters, `connected` its connection."""

    name = "mqtt"

    def __init__(self, config: MqttConfig, model_name: str, model_version: str = "") -> None:
        self.config = config
        self._model_version = f"{model_name}@{model_version}" if model_version else model_name
        self._detection_topic = f"{config.topic_prefix}/detection"

        self._lock = threading.Lock()  # guards _delivery; never held while calling paho
        self._delivery = Delivery(config.queue_size, WINDOW, at_most_once=config.qos == 0)
        self._wake = threading.Event()
        self._link = Link(config, self._wake, lambda: self.counts().queued)  # MqttError before any thread starts
        self._idle = threading.Event()  # nothing pending and nothing unacknowledged
        self._idle.set()
        self._stopping = False
        self._started = False
        self._closed = False
        self._flusher = threading.Thread(target=self._flush_loop, name="mqtt-flusher", daemon=True)

    def start(self) -> None:
        """Connect in the background (paho's thread) and start the flusher; returns at once."""
        if self._started or self._closed:
            return
        self._started = True
        self._flusher.start()
        self._link.start()

    # ------------------------------------------------------------------ payloads

    def hermes_payload(self, detection: Detection) -> dict[str, Any]:
        return {
            "modelId": detection.keyword,
            "modelVersion": self._model_version,
            "modelType": "universal",
            "currentSensitivity": detection.threshold,
            "siteId": self.config.site_id,
        }

    def messages(self, detection: Detection) -> tuple[tuple[str, str], ...]:
        """(topic, JSON payload) pairs for one detection, in publishing order."""
        return (
            (self._detection_topic, json.dumps(detection.event())),
            (f"hermes/hotword/{detection.keyword}/detected", json.dumps(self.hermes_payload(detection))),
        )

    # ------------------------------------------------------------------ the Sink protocol

    def handle(self, detection: Detection) -> None:
        """Queue one detection for publishing; never waits for the broker."""
        with self._lock:
            dropped = self._delivery.add(detection)
            self._idle.clear()
        self._queued_more(dropped)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Publish what can be within `timeout`, then disconnect and join both threads.

        Waits only while delivery is possible (connected, or the first connection attempt still
        running); with the broker known to be down it returns at once. Then `Link.close()`
        joins paho's thread.
        """
        if self._closed:
            return
        self._closed = True
        if not self._started:
            self._link.close()  # nothing ran; paho made no sockets yet, but be sure
            log.info("event=mqtt_closed published=0 dropped=0 started=false")
            return
        deadline = time.monotonic() + timeout
        # Wait only while delivery is possible: connected, or the first attempt still under way.
        while not self._idle.is_set() and self._link.may_deliver:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._idle.wait(min(remaining, 0.05))
        self._stopping = True
        self._wake.set()
        self._flusher.join(timeout)
        counts = self.counts()
        self._link.close()
        if counts.queued:
            log.warning("event=mqtt_closed published=%d undelivered=%d dropped=%d",
                        counts.published, counts.queued, counts.dropped)
        else:
            log.info("event=mqtt_closed published=%d dropped=%d", counts.published, counts.dropped)

    def undelivered(self) -> list[Detection]:
        """After `close()`: the detections the broker has not acknowledged, oldest first
        (in flight, then queued), handed over to the sink that replaces this one (`adopt`):
        they are no longer this sink's (a second call returns none)."""
        with self._lock:
            return self._delivery.hand_over()

    def adopt(self, detections: list[Detection]) -> None:
        """Take over a replaced sink's undelivered detections, ahead of this sink's own (they
        are older); still at most `queue_size`, the oldest dropped first and counted. Called
        before `start()`."""
        with self._lock:
            dropped = self._delivery.adopt(detections)
            self._idle.clear()
        self._queued_more(dropped)

    def _queued_more(self, dropped: int) -> None:
        if dropped:
            log.warning("event=mqtt_queue_overflow dropped=%d queue_size=%d kept=newest",
                        self.counts().dropped, self.config.queue_size)
        self._wake.set()

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        return self._link.connected

    def counts(self) -> MqttCounts:
        """One consistent reading of the counters, from any thread."""
        with self._lock:
            d = self._delivery
            return MqttCounts(d.published, d.dropped, d.lost, d.queued, self._link.reconnects)

    # ------------------------------------------------------------------ the flusher thread

    def _flush_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self._apply_events()
                self._publish_pending()
            except Exception as exc:  # never let the flusher die: detections would pile up
                log.error("event=mqtt_flusher_error error=%r", exc)
            with self._lock:
                if self._delivery.queued == 0:
                    self._idle.set()
            if self._stopping:
                return

    def _apply_events(self) -> None:
        lost = 0
        with self._lock:
            events = self._link.events
            while events:
                kind, mid = events.popleft()
                if kind == "ack":
                    self._delivery.acknowledged(mid)
                elif kind == "up":
                    self._delivery.connection_up()
                elif kind == "down":
                    lost += self._delivery.connection_down()  # QoS 0: paho discards unsent packets
        if lost:
            log.warning("event=mqtt_lost detections=%d qos=0 reason=disconnected", lost)

    def _publish_pending(self) -> None:
        while True:
            with self._lock:
                detection = self._delivery.take()
            if detection is None:
                return
            messages = self.messages(detection)
            sent = []
            for topic, payload in messages:
                if (mid := self._link.publish(topic, payload)) is None:
                    break
                sent.append(mid)
            with self._lock:
                if len(sent) < len(messages):
                    # The connection went away under us (QoS 0): keep the detection for the
                    # reconnect (a message of it that did go out may arrive twice), and take
                    # nothing more until paho says "up".
                    self._delivery.deferred()
                    return
                self._delivery.sent(sent)
