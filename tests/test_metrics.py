"""The Prometheus endpoint against real TCP clients on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import threading
import urllib.request
from collections.abc import Iterator

import pytest

from kws_stream import metrics_http
from kws_stream.metrics import DaemonStats, Metrics


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Metrics, int]]:
    monkeypatch.setattr(metrics_http, "REQUEST_TIMEOUT", 1.0)  # the default is 10 s
    m = Metrics(lambda: DaemonStats(detections={"yes": 3}, device_up=True))
    port = m.serve("127.0.0.1", 0)
    yield m, port
    m.close()


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def closed(s: socket.socket) -> bool:
    """True when the server closed this connection (EOF, or a reset if it left our bytes unread)."""
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def test_idle_and_half_sent_requests_hold_no_thread_and_are_closed(endpoint: tuple[Metrics, int]) -> None:
    _, port = endpoint
    assert 'kws_detections_total{keyword="yes"} 3.0' in scrape(port)
    threads = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(40)]
    try:
        for s in idle[::2]:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # half-sent: no blank line yet
        text = scrape(port)  # still answered
        assert "kws_device_up 1.0" in text
        assert threading.active_count() == threads  # none of the 40 holds a thread
        for s in idle:  # each is closed by the server after REQUEST_TIMEOUT
            assert closed(s)
    finally:
        for s in idle:
            s.close()
    assert 'kws_detections_total{keyword="yes"} 3.0' in scrape(port)


def test_a_flood_of_connections_closes_the_oldest_and_scrapes_still_work(monkeypatch: pytest.MonkeyPatch,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kws_stream.metrics")
    monkeypatch.setattr(metrics_http, "MAX_CONNECTIONS", 4)  # the default is 64
    m = Metrics(lambda: DaemonStats(detections={"go": 1}))
    port = m.serve("127.0.0.1", 0)
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(10)]
    try:
        for s in held:
            s.sendall(b"GET / HTTP/1.1\r\n")  # half a request each
        assert 'kws_detections_total{keyword="go"} 1.0' in scrape(port)  # the 11th connection is served
        for s in held[:7]:  # the oldest were closed to make room (the scrape took the 7th's place)
            assert closed(s)
        lines = [r.getMessage() for r in caplog.records if "event=metrics_connections_full" in r.getMessage()]
        assert len(lines) == 1 and "max_connections=4" in lines[0], lines  # once, not per connection
    finally:
        for s in held:
            s.close()
        m.close()
    assert not any(t.name == "metrics-http" for t in threading.enumerate())


def test_only_get_is_answered(endpoint: tuple[Metrics, int]) -> None:
    _, port = endpoint
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(100).split(b"\r\n")[0].split(b" ")[1] == b"405"
