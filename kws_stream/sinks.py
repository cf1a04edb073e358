"""Sinks: where detections end up. The first one writes JSON lines to stdout."""

from __future__ import annotations

import json
import logging
import os
import select
import sys
from typing import TYPE_CHECKING, TextIO

from .events import Detection, Sink, SinkClosed
from .fdwriter import FdWriter

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 0.3  # s the daemon's stdout may take, at stop, to take a line it is still waiting for


class StdoutSink:
    """One JSON object (or one human line) per detection, flushed at once.

    stdout under systemd or a pipe is block-buffered, so every line is flushed, or
    detections would arrive seconds late. A reader that went away (`| head -1`)
    raises `SinkClosed`; stdout is then pointed at /dev/null so that the
    interpreter's own flush at exit cannot print a BrokenPipeError traceback.
    """

    name = "stdout"

    def __init__(self, fmt: str = "json", stream: TextIO | None = None) -> None:
        if fmt not in ("json", "text"):
            raise ValueError(f"unknown output format {fmt!r}")
        self._format = fmt
        self._stream = stream if stream is not None else sys.stdout

    def format(self, detection: Detection) -> str:
        if self._format == "json":
            return json.dumps(detection.event(), separators=(", ", ": "))
        prefix = f"{detection.time} " if detection.time else ""
        return (f"{prefix}{detection.keyword:<6} {detection.score:.2f}  "
                f"{detection.start:7.2f}-{detection.end:.2f}s  {detection.source}")

    def start(self) -> None:
        """Nothing to open: stdout is the process's."""

    def handle(self, detection: Detection) -> None:
        try:
            self._stream.write(self.format(detection) + "\n")
            self._stream.flush()
        except (BrokenPipeError, ValueError):  # ValueError: stream already closed
            self._detach()
            raise SinkClosed("stdout closed") from None

    def close(self) -> None:
        try:
            self._stream.flush()
        except (BrokenPipeError, ValueError):
            self._detach()
            raise SinkClosed("stdout closed") from None

    def _detach(self) -> None:
        if self._stream is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


class LiveStdoutSink(StdoutSink):
    """`kws-stream run`'s stdout: never blocks, whoever reads it (or does not).

    A line is written at once while the pipe has room. When the reader stops reading and the
    pipe fills, one line waits for room (written whole when there is some) and the detections
    after it are dropped: counted in `dropped` (`kws_sink_dropped_total{sink="stdout"}`) and
    logged once when it starts and once when stdout takes lines again. The pipe's own buffer
    (64 KiB, ~400 detections) is the queue; spotting and the other sinks go on meanwhile.
    A reader that went away (`| head -1`) raises `SinkClosed`.
    """

    def __init__(self, fmt: str = "json", fd: int = 1) -> None:
        super().__init__(fmt)
        self._out = FdWriter(fd, "stdout", limit=0)
        self.dropped = 0
        self._episode = 0  # detections dropped since stdout last took one

    def handle(self, detection: Detection) -> None:
        if self._out.offer((self.format(detection) + "\n").encode()):
            if self._episode:
                log.warning("event=stdout_writable dropped=%d dropped_total=%d", self._episode, self.dropped)
                self._episode = 0
            return
        if self._out.gone:
            raise SinkClosed("stdout closed")
        self.dropped += 1
        self._episode += 1
        if self._episode == 1:
            log.warning("event=stdout_full action=dropping_detections keyword=%s dropped_total=%d "
                        "note=the_reader_of_stdout_is_not_reading", detection.keyword, self.dropped)

    def close(self) -> None:
        if self._out.close(CLOSE_TIMEOUT):
            self.dropped += 1
            log.warning("event=stdout_full action=stopping undelivered=1 dropped_total=%d", self.dropped)
        if self._out.gone:
            raise SinkClosed("stdout closed")


def stdout_reader_gone() -> bool:
    """True when stdout is a pipe whose reader has exited (poll reports POLLERR on the
    write end), so a daemon notices `| head -1` without waiting for its next detection."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))
    except (OSError, ValueError):  # stdout closed or not a real file
        return True


def build_sinks(config: Config, model_name: str) -> list[Sink]:
    """The sinks the config's [output] and [mqtt] ask for `run`, not started; a bad sink setting
    raises KwsError here, before anything connects."""
    sinks: list[Sink] = []
    if config.mqtt.enabled:
        from .mqtt import MqttSink  # paho only loads when MQTT is used

        sinks.append(MqttSink(config.mqtt, model_name))
    if config.output.stdout:
        sinks.append(LiveStdoutSink(config.output.format))
    return sinks
