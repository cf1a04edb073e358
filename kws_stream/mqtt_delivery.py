"""Ordered MQTT delivery as plain state: no paho, no threads, no clock.

Each detection moves, in the order it was added:

    pending --take()--> sending --sent(mids)--> in flight --acknowledged(mid) for each--> published
                            \\--deferred()--> back to the front of pending (the send failed)

or leaves, whatever its state, through `hand_over()` to the sink that replaces this one (a
reload), which `adopt()`s it ahead of its own. Pending is bounded (`queue_size`): when full,
the oldest pending detection is dropped and counted (`dropped`).

While disconnected nothing is taken, nor while `window` or more MQTT messages are in flight
(unacknowledged), so at most window + 1 are (a detection is two messages). After a
reconnect, what was in flight (QoS >= 1) is resent by the MQTT client first, so nothing newer
is taken until all of it is acknowledged: the order holds across reconnects. At QoS 0 (at most
once) a disconnect loses what was in flight: counted (`lost`), never resent.

The caller (MqttSink) serialises every call with one lock and feeds in what the network
reported; this class decides what may be sent next.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass, field

from .events import Detection

WINDOW = 20  # MQTT messages sent and not yet acknowledged (paho's own in-flight default)


@dataclass(eq=False)
class _InFlight:
    detection: Detection
    mids: set[int] = field(default_factory=set)  # its messages not yet acknowledged


class Delivery:
    """The delivery state of one sink's detections; see the module docstring.

    Counters: `published` (every message acknowledged), `dropped` (pushed out of a full
    queue), `lost` (QoS 0, in flight at a disconnect), `handed_over` (to a successor)."""

    def __init__(self, queue_size: int, window: int = WINDOW, at_most_once: bool = False) -> None:
        if queue_size < 1 or window < 1:
            raise ValueError(f"queue_size and window must be at least 1 (got {queue_size}, {window})")
        self.queue_size, self.window, self.at_most_once = queue_size, window, at_most_once
        self.published = self.dropped = self.lost = self.handed_over = 0
        self._pending: collections.deque[Detection] = collections.deque()
        self._sending: Detection | None = None
        self._in_flight: list[_InFlight] = []  # oldest first
        self._by_mid: dict[int, _InFlight] = {}
        self._connected = False
        self._resyncing = False  # reconnected with messages in flight: those go first

    # ------------------------------------------------------------------ detections in

    def add(self, detection: Detection) -> int:
        """Queue one detection; returns how many were dropped to make room (0 or 1)."""
        self._pending.append(detection)
        return self._trim()

    def adopt(self, detections: Sequence[Detection]) -> int:
        """Queue a predecessor's undelivered detections ahead of the pending ones (they are
        older); returns how many of the oldest were dropped to stay within `queue_size`."""
        self._pending.extendleft(reversed(detections))
        return self._trim()

    def _trim(self) -> int:
        excess = max(0, len(self._pending) - self.queue_size)
        for _ in range(excess):
            self._pending.popleft()
        self.dropped += excess
        return excess

    # ------------------------------------------------------------------ the network

    def connection_up(self) -> None:
        self._connected = True
        self._resyncing = bool(self._by_mid)

    def connection_down(self) -> int:
        """Returns how many detections this lost (QoS 0 only: what was in flight)."""
        self._connected = False
        if not self.at_most_once:
            return 0  # the client resends them after the reconnect
        lost = len(self._in_flight)
        self._in_flight.clear()
        self._by_mid.clear()
        self.lost += lost
        return lost

    def acknowledged(self, mid: int) -> None:
        """The broker acknowledged message `mid` (an unknown or stale one is ignored)."""
        item = self._by_mid.pop(mid, None)
        if item is not None:
            item.mids.discard(mid)
            if not item.mids:
                self._in_flight.remove(item)
                self.published += 1
        if not self._by_mid:
            self._resyncing = False

    # ------------------------------------------------------------------ sending

    def take(self) -> Detection | None:
        """The next detection to send now, or None: not connected, still resyncing, the
        window full, one already being sent, or nothing pending."""
        if (not self._connected or self._resyncing or self._sending is not None
                or len(self._by_mid) >= self.window or not self._pending):
            return None
        self._sending = self._pending.popleft()
        return self._sending

    def sent(self, mids: Sequence[int]) -> None:
        """The taken detection's messages went to the client with these message ids."""
        if not mids:
            raise ValueError("a detection is sent as at least one message")
        detection = self._taken()
        item = _InFlight(detection, set(mids))
        self._in_flight.append(item)
        self._by_mid.update((mid, item) for mid in mids)

    def deferred(self) -> None:
        """Sending the taken detection failed (the connection went away under it): it goes
        back to the front of the queue, and nothing more is taken until `connection_up`."""
        self._pending.appendleft(self._taken())
        self._connected = False

    def _taken(self) -> Detection:
        if self._sending is None:
            raise RuntimeError("no detection was taken")
        detection, self._sending = self._sending, None
        return detection

    # ------------------------------------------------------------------ state

    @property
    def queued(self) -> int:
        """Detections not yet published: pending, being sent or in flight."""
        return len(self._pending) + (self._sending is not None) + len(self._in_flight)

    @property
    def in_flight_messages(self) -> int:
        return len(self._by_mid)

    def backlog(self) -> list[Detection]:
        """Every detection not yet published, oldest first: in flight, being sent, pending."""
        sending = [self._sending] if self._sending is not None else []
        return [i.detection for i in self._in_flight] + sending + list(self._pending)

    def hand_over(self) -> list[Detection]:
        """The backlog, which stops being this object's: for a successor's `adopt()`."""
        detections = self.backlog()
        self._pending.clear()
        self._in_flight.clear()
        self._by_mid.clear()
        self._sending = None
        self._resyncing = False
        self.handed_over += len(detections)
        return detections
