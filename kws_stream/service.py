"""systemd integration: the sd_notify datagram protocol and signal wiring.

The protocol is one datagram of newline-separated `KEY=value` to $NOTIFY_SOCKET
(a path, or an abstract socket when it starts with '@'); a dozen lines, so no
dependency. Everything is a no-op when not run by systemd.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Mapping


class Notifier:
    """sd_notify sender; a context manager (its socket is closed by whoever created it)."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        enabled = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.watchdog_interval: float | None = int(usec) / 1e6 / 2 if enabled else None
        """Seconds between WATCHDOG=1 pings: half of WatchdogSec, as systemd recommends."""

    def send(self, **fields: str) -> None:
        if self._socket is None:
            return
        message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            self._socket.sendto(message, self._address)
        except OSError:
            pass  # systemd gone or socket closed: nothing useful to do

    def ready(self, status: str) -> None:
        self.send(READY="1", STATUS=status)

    def watchdog(self) -> None:
        self.send(WATCHDOG="1")

    def status(self, text: str) -> None:
        self.send(STATUS=text)

    def stopping(self) -> None:
        self.send(STOPPING="1", STATUS="stopping")

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class StopRequested(BaseException):
    """SIGTERM/SIGINT while starting: unwinds the start (model download or load) at once.

    A BaseException so that no `except Exception` on the way swallows it; cleanups
    (`finally`, the model installer's `.partial` removal) still run."""


class Signals:
    """SIGTERM/SIGINT request a clean stop, SIGHUP a config reload. Main thread only.

    Installed first thing, before the config, the model download and the model load:
    until then SIGHUP's default action kills the process, and systemd's
    `Restart=on-failure` does not restart a process killed by SIGHUP. A SIGHUP while
    starting is kept (`reload` is applied once running); a stop request while starting
    raises StopRequested in the main thread, so a slow download is not waited for.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.wake = threading.Event()  # set by each signal: the supervisor sleeps on it
        self.starting = True  # cleared by the main thread once the supervisor runs

    def install(self) -> Signals:
        """Take over from the entry point's early handler: a SIGHUP it remembered is a reload."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        early = signal.signal(signal.SIGHUP, self._on_reload)
        if getattr(early, "received", False):  # entry.EarlyHangup
            self.reload.set()
            self.wake.set()
        return self

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stop.set()
        self.wake.set()
        if self.starting:
            self.starting = False  # raise once: a second signal must not interrupt the unwinding
            raise StopRequested(signal.Signals(signum).name)

    def _on_reload(self, signum: int, frame: object) -> None:
        self.reload.set()
        self.wake.set()
