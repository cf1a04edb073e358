"""The daemon's stdout and the log never block on a reader that stopped reading (issue 25 item 5).

Real pipes, filled to the brim by the test: what a `| slow-reader` or a stalled journald is.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import select
import threading
import time
from collections.abc import Iterator

import pytest

from kws_stream.events import Detection, EventBus, SinkClosed
from kws_stream.fdwriter import FdWriter
from kws_stream.logsetup import StderrHandler
from kws_stream.sinks import CLOSE_TIMEOUT, LiveStdoutSink

WAIT = 10.0  # s: generous bounds; each test ends as soon as its condition holds


def det(keyword: str, end: float = 1.0) -> Detection:
    return Detection(keyword, 0.9, end - 1.0, end, "mic:test", "micronet-l", time="2026-12-07T00:00:00.000Z")


@pytest.fixture
def full_pipe() -> Iterator[tuple[int, int]]:
    """(read end, write end) of a pipe already full: its reader has stopped reading."""
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_NONBLOCK)
    try:
        while True:
            os.write(w, b"x" * 4096)
    except BlockingIOError:
        pass
    fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def drain(fd: int, until: bytes, timeout: float = WAIT) -> bytes:
    """Read the pipe until `until` has arrived (what the reader does once it reads again)."""
    got = b""
    deadline = time.monotonic() + timeout
    while until not in got:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{until!r} never arrived; got ...{got[-300:]!r}"
        if select.select([fd], [], [], remaining)[0]:
            got += os.read(fd, 1 << 16)
    return got


def writer_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("writer-")]


def test_a_full_stdout_drops_and_counts_without_blocking_and_logs_once(full_pipe, caplog) -> None:
    r, w = full_pipe
    sink = LiveStdoutSink("json", fd=w)
    caplog.set_level(logging.INFO, logger="kws_stream")
    for i, word in enumerate(["right", "left", "up", "down"]):
        started = time.monotonic()
        sink.handle(det(word, 1.0 + i))  # returns at once: before, the first of these blocked for good
        assert time.monotonic() - started < 1.0
    assert sink.dropped == 3  # "right" waits for room, whole; the others are dropped
    assert caplog.text.count("event=stdout_full") == 1 and "keyword=left dropped_total=1" in caplog.text
    # the reader reads again: the waiting line arrives whole, then new ones are written at once
    got = drain(r, b"\n")
    assert json.loads(got.lstrip(b"x"))["keyword"] == "right"
    sink.handle(det("yes", 9.0))
    assert json.loads(drain(r, b"\n"))["keyword"] == "yes"
    assert "event=stdout_writable dropped=3 dropped_total=3" in caplog.text
    sink.close()
    assert writer_threads() == []


def test_the_drops_reach_the_metrics_counter(full_pipe) -> None:
    _, w = full_pipe
    bus = EventBus([LiveStdoutSink("json", fd=w)]).start()
    for i in range(3):
        bus.publish(det("go", 1.0 + i))
    deadline = time.monotonic() + WAIT
    while bus.sink_counts()[1]["stdout"] < 2:  # the sink's thread hands them over
        assert time.monotonic() < deadline, bus.sink_counts()
        time.sleep(0.01)
    started = time.monotonic()
    bus.close()
    assert time.monotonic() - started < CLOSE_TIMEOUT + 1.0
    assert bus.sink_counts()[1] == {"stdout": 3}  # the one still waiting at stop counts too
    assert writer_threads() == []


def test_close_on_a_stalled_stdout_is_bounded_and_joins_its_thread(full_pipe, caplog) -> None:
    _, w = full_pipe
    sink = LiveStdoutSink("json", fd=w)
    sink.handle(det("stop"))
    assert writer_threads() == ["writer-stdout"]
    started = time.monotonic()
    sink.close()
    assert time.monotonic() - started < CLOSE_TIMEOUT + 1.0
    assert writer_threads() == []
    assert sink.dropped == 1 and "event=stdout_full action=stopping undelivered=1" in caplog.text


def test_a_reader_that_left_closes_the_sink(full_pipe) -> None:
    r, w = full_pipe
    os.close(r)
    sink = LiveStdoutSink("json", fd=w)
    with pytest.raises(SinkClosed):
        sink.handle(det("no"))
    with pytest.raises(SinkClosed):
        sink.close()


def test_a_line_written_at_once_needs_no_thread() -> None:
    r, w = os.pipe()
    try:
        sink = LiveStdoutSink("json", fd=w)
        sink.handle(det("on"))
        assert json.loads(os.read(r, 4096))["keyword"] == "on"
        assert writer_threads() == []
        sink.close()
    finally:
        os.close(r)
        os.close(w)


def test_a_full_stderr_never_blocks_a_thread_that_logs(full_pipe) -> None:
    r, w = full_pipe
    handler = StderrHandler(fd=w, limit=4096)
    handler.setFormatter(logging.Formatter("level=%(levelname)s %(message)s"))
    logger = logging.getLogger("kws_stream.test_stall")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        done = threading.Event()

        def audio_worker() -> None:  # what the audio worker does on a ring overflow, many times
            for i in range(2000):
                logger.warning("event=ring_overflow n=%d", i)
            done.set()

        thread = threading.Thread(target=audio_worker)
        thread.start()
        assert done.wait(WAIT), "logging blocked on a full stderr"
        thread.join()
        assert handler.dropped > 1800  # 4 KiB (~110 lines) waited; the rest was counted
        got = drain(r, b"n=1\n")  # stderr is read again: what waited arrives, in order
        logger.warning("event=after")
        got += drain(r, b"event=after\n")
        lines = got.lstrip(b"x").decode().splitlines()
        assert lines[0] == "level=WARNING event=ring_overflow n=0"
        assert f"event=log_dropped lines={handler.dropped} dropped_total={handler.dropped}" in lines[-2]
        assert lines[-1] == "level=WARNING event=after"
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert writer_threads() == []


def test_a_writer_keeps_at_most_its_limit() -> None:
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, 1031, 4096)  # F_SETPIPE_SZ: a one-page pipe
        out = FdWriter(w, "test", limit=1000)
        accepted = sum(out.offer(b"y" * 99 + b"\n") for _ in range(200))
        assert out.waiting <= 1000
        assert accepted <= (4096 + 1000) // 100 + 1
        assert 0 < out.close(0.1) <= 1000 and writer_threads() == []
    finally:
        os.close(r)
        os.close(w)
