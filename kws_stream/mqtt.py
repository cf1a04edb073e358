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

Nothing connects and no thread runs until `start()`; `close()` stops and releases everything
(paho's thread, its socket and its internal wake-up socket pair). Threads, each joined by `close()`:
- paho's network thread (`loop_start`) connects, reconnects with backoff (1 s doubling to 30 s)
  and calls the `_on_*` callbacks, which never take a lock of ours: they only append to an
  event deque and wake the flusher (paho holds its own locks while calling them);
- the flusher thread is the only caller of `client.publish`: it moves detections from the
  bounded `pending` deque to paho while connected, at most `WINDOW` messages unacknowledged.

`handle()` (called by the event bus's thread for this sink) only appends to `pending` and wakes
the flusher, so it returns at once whether the broker is up, down or unreachable. While the
broker is away, detections wait in `pending` (at most `queue_size`; when full the oldest is
dropped, counted and logged) and are published in order after the reconnect. Messages that paho
had already sent (QoS >= 1) but not seen acknowledged when the connection dropped are resent by
paho first; the flusher waits for their acknowledgements before publishing newer ones, so the
order holds across reconnects (QoS 1 may, as always, deliver a message twice). QoS 0 is at most
once: what was in the socket when the connection broke is lost.
"""

from __future__ import annotations

import collections
import json
import logging
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from .errors import KwsError
from .events import Detection

if TYPE_CHECKING:
    from .config import MqttConfig

log = logging.getLogger(__name__)

KEEPALIVE = 30  # s; a broker that vanished without closing the socket is noticed in ~45 s
CONNECT_TIMEOUT = 2.0  # s for TCP connect + TLS handshake; close() may wait this long for paho's thread
RECONNECT_MIN, RECONNECT_MAX = 1, 30  # s, doubling
WINDOW = 20  # messages handed to paho and not yet acknowledged (paho's own in-flight default)
CLOSE_TIMEOUT = 1.0  # s close() waits for queued detections to be acknowledged


class MqttError(KwsError):
    """A bad [mqtt] setting found at start (unreadable password or CA file)."""

    exit_code = 2


def _q(value: object) -> str:
    """A log field value: bare when it is one word, quoted otherwise."""
    text = str(value)
    return text if text and not any(c.isspace() or c in '"=' for c in text) else json.dumps(text)


def checked_password(config: MqttConfig) -> str | None:
    """The password to connect with, after every check of the [mqtt] secrets that `run`
    makes at start and `config check` makes without starting; MqttError (exit 2) names the
    first bad setting."""
    password = config.password or None
    if config.password_file:
        if config.password:
            raise MqttError("mqtt: set password or password_file, not both")
        password = read_password_file(config.password_file)
    if password and not config.username:
        raise MqttError("mqtt: a password needs a username")
    if config.tls and config.ca_file:
        try:
            ssl.create_default_context().load_verify_locations(cafile=config.ca_file)
        except ssl.SSLError as exc:  # an OSError too: first
            raise MqttError(f"mqtt ca_file {config.ca_file}: not a usable CA certificate "
                            f"({exc.reason or exc})") from None
        except OSError as exc:
            raise MqttError(f"mqtt ca_file {config.ca_file}: cannot be read ({exc.strerror or exc})") from None
    return password


def read_password_file(path: str) -> str:
    """The password in `path`, without its trailing newline; one-line MqttError if unusable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MqttError(f"mqtt password_file {path}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise MqttError(f"mqtt password_file {path}: not UTF-8 text") from None
    password = text.rstrip("\r\n")
    if not password:
        raise MqttError(f"mqtt password_file {path}: is empty")
    return password


class _Client(paho.Client):
    """paho's client, remembering why the last connection attempt failed: paho's
    `on_connect_fail` is told nothing, and a wrong CA must not read as "unreachable"."""

    last_error: OSError | None = None

    def reconnect(self) -> MQTTErrorCode:
        try:
            self.last_error = None
            return super().reconnect()
        except OSError as exc:
            self.last_error = exc
            raise


@dataclass
class _Item:
    """One detection: its two messages, and how many of them are not yet acknowledged."""

    detection: Detection
    messages: tuple[tuple[str, str], ...]
    unacked: int = 0


class MqttSink:
    """Publishes detections to an MQTT broker; see the module docstring for topics and payloads.

    Counters (read them from any thread): `published` (detections whose messages were all
    acknowledged by the broker; for QoS 0, written to the socket), `dropped` (detections pushed
    out of the full queue while the broker was away), `reconnects` (successful connections after
    the first). `connected` and `queued` describe the present.
    """

    name = "mqtt"

    def __init__(self, config: MqttConfig, model_name: str, model_version: str = "") -> None:
        self.config = config
        self.published = 0
        self.dropped = 0
        self.reconnects = 0
        self._model_version = f"{model_name}@{model_version}" if model_version else model_name
        self._detection_topic = f"{config.topic_prefix}/detection"

        self._client = self._make_client(config)  # raises MqttError before any thread starts

        self._lock = threading.Lock()  # guards _pending only; never held while calling paho
        self._pending: collections.deque[_Item] = collections.deque()
        self._events: collections.deque[tuple[str, int]] = collections.deque()  # from paho's thread
        self._wake = threading.Event()
        self._idle = threading.Event()  # nothing pending and nothing unacknowledged
        self._idle.set()
        self._stopping = False
        self._started = False
        self._closed = False

        # Owned by the flusher thread.
        self._inflight: dict[int, _Item] = {}  # paho mid -> its detection
        self._inflight_items = 0  # detections in _inflight (read by `queued` from any thread)
        self._flusher_connected = False
        self._resyncing = False

        # Owned by paho's thread (the callbacks).
        self._up = False
        self._connects = 0
        self._outage_logged = False
        self._down_since = 0.0
        self._refused: str | None = None

        self._flusher = threading.Thread(target=self._flush_loop, name="mqtt-flusher", daemon=True)

    def start(self) -> None:
        """Connect in the background (paho's thread) and start the flusher; returns at once."""
        if self._started or self._closed:
            return
        self._started = True
        self._flusher.start()
        self._client.connect_async(self.config.host, self.config.port, keepalive=KEEPALIVE)
        self._client.loop_start()  # paho's thread: connects, retries with backoff, reconnects

    # ------------------------------------------------------------------ setup

    def _make_client(self, config: MqttConfig) -> paho.Client:
        client = _Client(CallbackAPIVersion.VERSION2, client_id=config.client_id,
                         protocol=paho.MQTTv311, clean_session=True)
        password = checked_password(config)
        if config.username:
            client.username_pw_set(config.username, password or None)
        if config.tls:
            try:
                client.tls_set(ca_certs=config.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
            except ssl.SSLError as exc:  # the system store (ca_file was checked above)
                raise MqttError(f"mqtt TLS setup failed ({exc.reason or exc})") from None
        client.reconnect_delay_set(RECONNECT_MIN, RECONNECT_MAX)
        client.connect_timeout = CONNECT_TIMEOUT
        client.suppress_exceptions = True  # a bug in a callback must not end paho's thread
        client.on_log = self._on_log  # paho's own lines, folded into ours (no logger of paho's)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

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
        item = _Item(detection, self.messages(detection))
        with self._lock:
            overflow = len(self._pending) >= self.config.queue_size
            if overflow:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append(item)
            self._idle.clear()
        if overflow:
            log.warning("event=mqtt_queue_overflow dropped=%d queue_size=%d kept=newest",
                        self.dropped, self.config.queue_size)
        self._wake.set()

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Publish what can be within `timeout`, then disconnect and join both threads.

        Waits only while delivery is possible (connected, or the first connection attempt still
        running); with the broker known to be down it returns at once. Joining paho's thread
        takes up to 1 s (its backoff sleeps in 1 s steps), or CONNECT_TIMEOUT mid-connect.
        """
        if self._closed:
            return
        self._closed = True
        if not self._started:
            self._client._reset_sockets()  # nothing ran; paho made no sockets yet, but be sure
            log.info("event=mqtt_closed published=0 dropped=0 started=false")
            return
        deadline = time.monotonic() + timeout
        # Wait only while delivery is possible: connected, or the first attempt still under way.
        while not self._idle.is_set() and (self._up or (self._connects == 0 and not self._outage_logged)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._idle.wait(min(remaining, 0.05))
        self._stopping = True
        self._wake.set()
        self._flusher.join(timeout)
        undelivered = self.queued
        self._client.disconnect()
        self._client.loop_stop()  # joins paho's thread (at most CONNECT_TIMEOUT if mid-connect)
        # loop_start() made a socket pair to wake paho's select(); loop_stop() leaves it open
        # until the client is garbage-collected (2 fds per replaced client). paho 2.x has no
        # public call for it; _reset_sockets() is what its own __del__ runs.
        self._client._reset_sockets()
        if undelivered:
            log.warning("event=mqtt_closed published=%d undelivered=%d dropped=%d",
                        self.published, undelivered, self.dropped)
        else:
            log.info("event=mqtt_closed published=%d dropped=%d", self.published, self.dropped)

    def undelivered(self) -> list[Detection]:
        """After `close()`: the detections the broker has not acknowledged, oldest first
        (in flight, then queued), for the sink that replaces this one (`adopt`)."""
        inflight = list(dict.fromkeys(id(i) for i in self._inflight.values()))
        items = {id(i): i for i in self._inflight.values()}
        with self._lock:
            pending = list(self._pending)
        return [items[k].detection for k in inflight] + [i.detection for i in pending]

    def adopt(self, detections: list[Detection]) -> None:
        """Take over a replaced sink's undelivered detections, ahead of this sink's own (they
        are older); still at most `queue_size`, the oldest dropped first and counted."""
        items = [_Item(d, self.messages(d)) for d in detections]
        with self._lock:
            self._pending.extendleft(reversed(items))
            excess = max(0, len(self._pending) - self.config.queue_size)
            for _ in range(excess):
                self._pending.popleft()
            self.dropped += excess
            self._idle.clear()
        if excess:
            log.warning("event=mqtt_queue_overflow dropped=%d queue_size=%d kept=newest",
                        self.dropped, self.config.queue_size)
        self._wake.set()

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        return self._up

    @property
    def queued(self) -> int:
        """Detections not yet acknowledged: waiting in the queue or in flight."""
        with self._lock:
            waiting = len(self._pending)
        return waiting + self._inflight_items

    # ------------------------------------------------------------------ paho's thread

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            if self._refused != str(reason):  # once per reason until a connection succeeds
                self._refused = str(reason)
                self._outage_logged = True
                log.error("event=mqtt_refused host=%s port=%d reason=%s action=retrying",
                          self.config.host, self.config.port, _q(reason))
            return
        self._refused = None
        self._up = True
        self._connects += 1
        if self._connects == 1:
            log.info("event=mqtt_connected host=%s port=%d client_id=%s tls=%s",
                     self.config.host, self.config.port, _q(self.config.client_id), self.config.tls)
        else:
            self.reconnects += 1
            log.warning("event=mqtt_reconnected host=%s port=%d down_s=%.1f queued=%d",
                        self.config.host, self.config.port, time.monotonic() - self._down_since, self.queued)
        self._outage_logged = False
        self._push("up")

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        if self._outage_logged:  # log the first failed attempt of an outage, not every retry
            return
        self._outage_logged = True
        self._down_since = time.monotonic()
        error = getattr(client, "last_error", None)
        if isinstance(error, ssl.SSLError):  # the broker answered: its certificate or TLS is the problem
            reason = getattr(error, "verify_message", None) or error.reason or str(error)
            if isinstance(error, ssl.SSLCertVerificationError):
                reason = f"certificate verify failed: {reason}"
            log.error("event=mqtt_tls_failed host=%s port=%d ca_file=%s reason=%s action=retrying "
                      "fix=\"check that ca_file signed the broker's certificate\"",
                      self.config.host, self.config.port, _q(self.config.ca_file or "system"), _q(reason))
            return
        log.warning("event=mqtt_unreachable host=%s port=%d reason=%s action=retrying backoff_s=%d-%d",
                    self.config.host, self.config.port, _q(getattr(error, "strerror", None) or error or "unknown"),
                    RECONNECT_MIN, RECONNECT_MAX)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        was_up, self._up = self._up, False
        self._push("down")
        if was_up and not self._stopping:
            self._outage_logged = True
            self._down_since = time.monotonic()
            log.warning("event=mqtt_disconnected host=%s port=%d reason=%s action=reconnecting queued=%d",
                        self.config.host, self.config.port, _q(reason), self.queued)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        self._push("ack", mid)

    def _on_log(self, client: paho.Client, userdata: Any, level: int, buf: str) -> None:
        """paho's log lines. Its connection errors while the broker is away repeat what
        mqtt_unreachable/mqtt_disconnected already say once, so they go to debug; only an
        exception in one of our callbacks (which paho swallows) is an error."""
        if level == paho.MQTT_LOG_ERR and buf.startswith("Caught exception"):
            log.error("event=mqtt_callback_error error=%s", _q(buf))
        else:
            log.debug("event=mqtt_paho level=%s message=%s", getattr(level, "name", level), _q(buf))

    def _push(self, kind: str, mid: int = 0) -> None:
        self._events.append((kind, mid))  # deque.append is atomic; no lock shared with paho
        self._wake.set()

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
                if not self._pending and not self._inflight:
                    self._idle.set()
            if self._stopping:
                return

    def _apply_events(self) -> None:
        while self._events:
            kind, mid = self._events.popleft()
            if kind == "ack":
                item = self._inflight.pop(mid, None)
                if item is not None:
                    item.unacked -= 1
                    if item.unacked == 0:
                        self._inflight_items -= 1
                        self.published += 1
            elif kind == "up":
                self._flusher_connected = True
                # QoS >= 1 messages paho still holds are resent by paho, and go first.
                self._resyncing = bool(self._inflight)
            elif kind == "down":
                self._flusher_connected = False
                if self.config.qos == 0:
                    self._inflight.clear()  # paho discards unsent QoS 0 packets on reconnect
                    self._inflight_items = 0
        if self._resyncing and not self._inflight:
            self._resyncing = False

    def _publish_pending(self) -> None:
        qos = self.config.qos
        while self._flusher_connected and not self._resyncing and len(self._inflight) < WINDOW:
            with self._lock:
                if not self._pending:
                    return
                item = self._pending.popleft()
            sent = []
            for topic, payload in item.messages:
                info = self._client.publish(topic, payload, qos=qos)
                if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (
                        qos > 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN):
                    sent.append(info.mid)  # QoS >= 1: paho keeps it and sends it on reconnect
                else:
                    break
            if len(sent) < len(item.messages):
                # The connection went away under us (QoS 0): keep the detection for the
                # reconnect. A message of it that did go out may arrive twice.
                log.debug("event=mqtt_publish_deferred rc=%s", info.rc)
                with self._lock:
                    self._pending.appendleft(item)
                self._flusher_connected = False  # until paho says "up" again
                return
            item.unacked = len(sent)
            for mid in sent:
                self._inflight[mid] = item
            self._inflight_items += 1
