"""paho's side of the MQTT sink: the [mqtt] secrets checked, the client set up, its
connection followed and logged.

paho's network thread (`loop_start`) connects, reconnects with backoff (RECONNECT_MIN doubling
to RECONNECT_MAX) and calls the `_on_*` callbacks. They never take a lock of the sink's (paho
holds its own locks while calling them): they log, keep the connection state and append what
the sink's flusher needs to `events` ("up", "down", or "ack" with paho's message id), then set
the flusher's wake-up event.
"""

from __future__ import annotations

import collections
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from .errors import KwsError

if TYPE_CHECKING:
    from .config import MqttConfig

log = logging.getLogger(__name__)

KEEPALIVE = 30  # s; a broker that vanished without closing the socket is noticed in ~45 s
CONNECT_TIMEOUT = 2.0  # s for TCP connect + TLS handshake; close() may wait this long for paho's thread
RECONNECT_MIN, RECONNECT_MAX = 1, 30  # s, doubling


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


class Link:
    """One paho client: `start()` connects in paho's thread, `publish()` hands it a message,
    `close()` disconnects and releases its thread and sockets. `queued` (a callable) gives the
    sink's backlog for the log lines of an outage; `wake` is set after every event."""

    def __init__(self, config: MqttConfig, wake: threading.Event, queued: Callable[[], int]) -> None:
        self.config = config
        self.events: collections.deque[tuple[str, int]] = collections.deque()
        self.reconnects = 0
        self._wake, self._queued = wake, queued
        self._client = self._make_client(config)  # raises MqttError before any thread starts
        self._stopping = False
        # Owned by paho's thread (the callbacks); read anywhere.
        self._up = False
        self._connects = 0
        self._outage_logged = False
        self._down_since = 0.0
        self._refused: str | None = None

    @property
    def connected(self) -> bool:
        return self._up

    @property
    def may_deliver(self) -> bool:
        """Connected, or the first connection attempt still under way."""
        return self._up or (self._connects == 0 and not self._outage_logged)

    def start(self) -> None:
        self._client.connect_async(self.config.host, self.config.port, keepalive=KEEPALIVE)
        self._client.loop_start()  # paho's thread: connects, retries with backoff, reconnects

    def publish(self, topic: str, payload: str) -> int | None:
        """paho's message id, or None when paho could not take the message (QoS 0 while the
        connection is gone). At QoS >= 1 paho keeps what it cannot send and sends it on the
        reconnect, so that counts as taken."""
        qos = self.config.qos
        info = self._client.publish(topic, payload, qos=qos)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (qos > 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN):
            return int(info.mid)
        log.debug("event=mqtt_publish_deferred rc=%s", info.rc)
        return None

    def close(self) -> None:
        """Disconnect and join paho's thread (at most CONNECT_TIMEOUT if mid-connect, else up
        to 1 s: its backoff sleeps in 1 s steps); also when `start()` never ran."""
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        # loop_start() made a socket pair to wake paho's select(); loop_stop() leaves it open
        # until the client is garbage-collected (2 fds per replaced client). paho 2.x has no
        # public call for it; _reset_sockets() is what its own __del__ runs.
        self._client._reset_sockets()

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
                        self.config.host, self.config.port, time.monotonic() - self._down_since, self._queued())
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
                        self.config.host, self.config.port, _q(reason), self._queued())

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
        self.events.append((kind, mid))  # deque.append is atomic; no lock shared with paho
        self._wake.set()

