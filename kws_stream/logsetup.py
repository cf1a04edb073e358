"""Logging to stderr that never blocks the thread that logs.

Under systemd stderr is a stream to journald, which can stall (journald busy, rate limiting,
a full disk); run by hand it may be a pipe nobody reads. A plain StreamHandler would then
block whichever thread logs: the audio worker (a ring overflow), the supervisor (and with it
the watchdog pings) or the Wyoming event loop. Here a line is written at once when stderr has
room, else it waits in a bounded buffer (LOG_BUFFER) for a writer thread, else it is dropped;
the number dropped is logged once stderr takes lines again (`event=log_dropped`).
"""

from __future__ import annotations

import logging
import sys

from .fdwriter import FdWriter

LOG_BUFFER = 1 << 16  # bytes of log lines that may wait for a stalled stderr (~500 lines)
CLOSE_TIMEOUT = 0.5  # s a stalled stderr gets, at exit, to take what waits
LOGGER = "kws_stream"
FORMAT = "%(asctime)s level=%(levelname)s %(message)s"


class StderrHandler(logging.Handler):
    """One line per record on a file descriptor (stderr), through an `FdWriter`."""

    def __init__(self, fd: int = 2, limit: int = LOG_BUFFER) -> None:
        super().__init__()
        self._out = FdWriter(fd, "stderr", limit)
        self.dropped = 0
        self._unreported = 0  # dropped since the last line stderr took

    def emit(self, record: logging.LogRecord) -> None:  # called under self.lock
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        if self._unreported:
            note = logging.makeLogRecord({"name": LOGGER, "levelno": logging.WARNING, "levelname": "WARNING",
                                          "msg": f"event=log_dropped lines={self._unreported} "
                                                 f"dropped_total={self.dropped} note=stderr_was_full"})
            if self._out.offer((self.format(note) + "\n").encode(errors="replace")):
                self._unreported = 0
        if not self._out.offer(line.encode(errors="replace")):
            self.dropped += 1
            self._unreported += 1

    def close(self) -> None:
        """Deliver what waits (for at most CLOSE_TIMEOUT s) and join the writer thread. Also
        called by `logging.shutdown` at exit."""
        self._out.close(CLOSE_TIMEOUT)
        super().close()


def setup_logging(level: str) -> None:
    """One line per event on stderr: `level=... event=... key=value`. Replaces (and closes)
    the handler of an earlier call."""
    handler: logging.Handler
    try:
        handler = StderrHandler(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no stderr, or a stand-in without a descriptor
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger(LOGGER)
    old, root.handlers[:] = list(root.handlers), [handler]
    for h in old:
        h.close()
    root.setLevel(level.upper())
    root.propagate = False
