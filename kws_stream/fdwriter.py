"""Lines to a file descriptor that may stall (a pipe nobody reads, a journald that stopped),
without ever blocking the caller.

`offer()` writes at once when the descriptor has room (poll says writable; a write of at most
PIPE_BUF bytes then cannot block, and to a pipe it is atomic, so no line is ever torn);
otherwise it keeps the line for the writer thread, if at most `limit` bytes are waiting,
and else refuses it: the caller counts what was refused. The writer thread is started the
first time a line has to wait, and `close()` gives it a bounded time to deliver, then joins it.
"""

from __future__ import annotations

import os
import select
import threading
import time

PIPE_BUF = select.PIPE_BUF  # bytes a writable pipe takes in one write without blocking (4096)
_ERROR = select.POLLERR | select.POLLHUP | select.POLLNVAL


class FdWriter:
    def __init__(self, fd: int, name: str, limit: int) -> None:
        """`limit`: bytes that may wait for the descriptor; 0 = one line at most (the
        descriptor's own buffer, e.g. a pipe's 64 KiB, is then the only queue)."""
        self.fd = fd
        self.name = name
        self.limit = limit
        self.gone = False
        """The reader went away (EPIPE, or poll reports an error): nothing more is written."""
        self._waiting = bytearray()
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = float("inf")
        self._wake: tuple[int, int] | None = None  # a pipe that interrupts the thread's poll
        self._thread: threading.Thread | None = None

    def offer(self, data: bytes) -> bool:
        """Write `data` now, or keep it for the writer thread; False when it was refused
        (too much already waiting, the reader gone, or closing)."""
        with self._cond:
            if self.gone or self._closing:
                return False
            if not self._waiting and self._writable(0):
                data = data[self._write(data):]
                if not data:
                    return True
            elif self._waiting and len(self._waiting) + len(data) > self.limit:
                return False
            if self.gone:
                return False
            self._waiting += data
            self._start()
            self._cond.notify()
            return True

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def close(self, timeout: float) -> int:
        """Let the thread deliver what waits for up to `timeout` s, then stop it; returns the
        bytes left undelivered."""
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._cond.notify()
            thread = self._thread
            if self._wake is not None:
                os.write(self._wake[1], b"x")
        if thread is not None:
            thread.join(timeout + 1.0)
        with self._cond:
            left = len(self._waiting)
            self._waiting.clear()
            if self._wake is not None and (thread is None or not thread.is_alive()):
                for fd in self._wake:
                    os.close(fd)
                self._wake = None
        return left

    # ------------------------------------------------------------ under self._cond

    def _writable(self, timeout_ms: int) -> bool:
        poller = select.poll()
        poller.register(self.fd, select.POLLOUT)
        try:
            events = poller.poll(timeout_ms)
        except OSError:
            events = [(self.fd, select.POLLERR)]
        if any(e & _ERROR for _, e in events):
            self.gone = True
        return not self.gone and any(e & select.POLLOUT for _, e in events)

    def _write(self, data: bytes | bytearray) -> int:
        """One write of at most PIPE_BUF bytes to a descriptor that poll found writable."""
        try:
            return os.write(self.fd, data[:PIPE_BUF])
        except BlockingIOError:  # someone made it non-blocking and it filled meanwhile
            return 0
        except OSError:  # EPIPE: the reader left; EBADF and the like: nothing to write to
            self.gone = True
            self._waiting.clear()
            return 0

    def _start(self) -> None:
        if self._thread is None:
            read_end, write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            self._wake = (read_end, write_end)
            # daemon: never keeps the process alive; close() joins it
            self._thread = threading.Thread(target=self._run, name=f"writer-{self.name}", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        assert self._wake is not None
        poller = select.poll()
        poller.register(self.fd, select.POLLOUT)
        poller.register(self._wake[0], select.POLLIN)
        while True:
            with self._cond:
                while not self._waiting and not self._closing:
                    self._cond.wait()
                remaining = self._deadline - time.monotonic()
                if self.gone or not self._waiting or remaining <= 0:
                    return
            # outside the lock: offer() must not wait for a stalled descriptor
            timeout = None if remaining == float("inf") else max(1, int(remaining * 1000))
            try:
                events = dict(poller.poll(timeout))
            except OSError:
                events = {self.fd: select.POLLERR}
            if events.get(self._wake[0]):
                try:
                    os.read(self._wake[0], 64)
                except BlockingIOError:
                    pass
            with self._cond:
                mask = events.get(self.fd, 0)
                if mask & _ERROR:
                    self.gone = True
                elif mask & select.POLLOUT and self._waiting:
                    del self._waiting[:self._write(self._waiting)]
