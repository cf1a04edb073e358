"""Prometheus metrics (off by default), from a private registry.

Counters that already exist in the daemon (detections, audio seen, overflows,
reconnects, sink errors) are read at scrape time by a collector, so the audio path
pays nothing for them; only inference latency is observed per inference.
prometheus_client (~8 MB resident) is imported only when metrics are enabled.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import KwsError

log = logging.getLogger(__name__)

INFERENCE_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
REQUEST_TIMEOUT = 10.0  # s for a client to send its request head (and take the answer)
MAX_CONNECTIONS = 64  # open connections; one more closes the oldest (logged)
MAX_REQUEST_HEAD = 8192  # bytes of request line + headers
EVICTION_LOG_INTERVAL = 60.0  # s between log lines while connections are being evicted
CLOSE_TIMEOUT = 2.0  # s close() waits for the endpoint thread


@dataclass(frozen=True)
class DaemonStats:
    """A snapshot of the daemon's own counters."""

    detections: Mapping[str, int] = field(default_factory=dict)
    audio_seconds: float = 0.0
    ring_overflow_seconds: float = 0.0
    input_overflows: int = 0
    reconnects: int = 0
    sink_errors: Mapping[str, int] = field(default_factory=dict)
    sink_dropped: Mapping[str, int] = field(default_factory=dict)
    device_up: bool = False


class _StatsCollector:
    """A prometheus_client custom collector (duck-typed: it only needs `collect`)."""

    def __init__(self, stats: Callable[[], DaemonStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self._stats()
        detections = CounterMetricFamily("kws_detections", "Keywords reported", labels=["keyword"])
        for keyword, count in sorted(s.detections.items()):
            detections.add_metric([keyword], count)
        yield detections
        yield CounterMetricFamily("kws_audio_seconds", "Seconds of audio processed", value=s.audio_seconds)
        yield CounterMetricFamily("kws_ring_overflow_seconds", "Seconds of captured audio lost because the "
                                  "worker fell a whole ring behind", value=s.ring_overflow_seconds)
        yield CounterMetricFamily("kws_input_overflows", "PortAudio input overflow flags", value=s.input_overflows)
        yield CounterMetricFamily("kws_device_reconnects", "Input device losses recovered or being retried",
                                  value=s.reconnects)
        errors = CounterMetricFamily("kws_sink_errors", "Errors raised by sinks", labels=["sink"])
        for sink, count in sorted(s.sink_errors.items()):
            errors.add_metric([sink], count)
        yield errors
        dropped = CounterMetricFamily("kws_sink_dropped", "Detections dropped by full sink queues", labels=["sink"])
        for sink, count in sorted(s.sink_dropped.items()):
            dropped.add_metric([sink], count)
        yield dropped
        yield GaugeMetricFamily("kws_device_up", "1 while audio is arriving from the input device",
                                value=1.0 if s.device_up else 0.0)


class Metrics:
    def __init__(self, stats: Callable[[], DaemonStats]) -> None:
        from prometheus_client import CollectorRegistry, Histogram

        self.registry = CollectorRegistry()
        self.registry.register(_StatsCollector(stats))
        self.inference_seconds = Histogram("kws_inference_seconds", "Model invoke time per window",
                                           buckets=INFERENCE_BUCKETS, registry=self.registry)
        self._endpoint: _Endpoint | None = None

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint; returns the bound port (0 picks a free one)."""
        endpoint = _Endpoint(self.registry)
        try:
            bound = endpoint.start(host, port)
        except OSError as exc:
            raise KwsError(f"metrics: cannot listen on {host}:{port} ({exc.strerror}): "
                           "choose another [metrics] port") from None
        self._endpoint = endpoint
        return bound

    def close(self) -> None:
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None


class _Endpoint:
    """The scrape endpoint: one thread running an asyncio loop, one request per connection.

    prometheus_client's own server spends a thread per connection and waits forever for a
    request, so every idle or half-sent request held a thread (6 -> 306 threads). Here an open
    connection costs a file descriptor, not a thread; a request head must arrive within
    REQUEST_TIMEOUT, and at most MAX_CONNECTIONS are open at once (a new one closes the oldest).
    """

    def __init__(self, registry: Any) -> None:
        self._registry = registry
        self._open: dict[asyncio.StreamWriter, None] = {}  # oldest first
        self._evicted = 0
        self._eviction_logged = -EVICTION_LOG_INTERVAL
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="metrics-http", daemon=True)

    def start(self, host: str, port: int) -> int:
        """Listen on host:port and serve from the endpoint's thread; returns the bound port."""
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, host, port, limit=MAX_REQUEST_HEAD))
        except BaseException:
            self._loop.close()
            raise
        self._thread.start()
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._open) >= MAX_CONNECTIONS:
            self._evict_oldest()
        self._open[writer] = None
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            method = head.split(b" ", 1)[0]
            if method in (b"GET", b"HEAD"):
                from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

                body = generate_latest(self._registry)
                writer.write(_response(b"200 OK", CONTENT_TYPE_LATEST, body if method == b"GET" else b"",
                                       len(body)))
            else:
                writer.write(_response(b"405 Method Not Allowed", "text/plain", b"GET only\n"))
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # idle, cut, oversized, evicted or unread: just close it
        finally:
            self._open.pop(writer, None)
            writer.close()

    def _evict_oldest(self) -> None:
        """Make room by closing the connection that has waited longest for its request: a real
        scrape sends its request at once, so a flood of idle connections cannot lock it out."""
        oldest = next(iter(self._open))
        del self._open[oldest]
        oldest.close()  # its reader sees EOF and its task ends
        self._evicted += 1
        now = time.monotonic()
        if now - self._eviction_logged >= EVICTION_LOG_INTERVAL:  # a flood is one line a minute
            self._eviction_logged = now
            log.warning("event=metrics_connections_full max_connections=%d action=closed_oldest closed_total=%d",
                        MAX_CONNECTIONS, self._evicted)

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            open_connections = asyncio.all_tasks() - {asyncio.current_task()}
            for task in open_connections:
                task.cancel()
            await asyncio.gather(*open_connections, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(CLOSE_TIMEOUT)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CLOSE_TIMEOUT)
            if not self._thread.is_alive():
                self._loop.close()


def _response(status: bytes, content_type: str, body: bytes, length: int | None = None) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type.encode() +
            b"\r\nContent-Length: " + str(len(body) if length is None else length).encode() +
            b"\r\nConnection: close\r\n\r\n" + body)
