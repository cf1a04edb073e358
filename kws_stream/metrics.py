"""Prometheus metrics (off by default), from a private registry.

Counters that already exist in the daemon (detections, audio seen, overflows,
reconnects, sink errors) are read at scrape time by a collector, so the audio path
pays nothing for them; only inference latency is observed per inference.
prometheus_client (~8 MB resident) is imported only when metrics are enabled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import KwsError

INFERENCE_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)


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
        self._endpoint: Any = None  # metrics_http.Endpoint once serving

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint; returns the bound port (0 picks a free one)."""
        from .metrics_http import Endpoint  # asyncio loads only when metrics are on

        endpoint = Endpoint(self.registry)
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
