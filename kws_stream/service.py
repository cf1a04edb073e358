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
from typing import Mapping


class Notifier:
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

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def install_signal_handlers(stop: threading.Event, reload: threading.Event) -> None:
    """SIGTERM/SIGINT request a clean stop; SIGHUP a config reload. Main thread only."""
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
