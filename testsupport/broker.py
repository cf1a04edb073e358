"""A real mosquitto broker and a subscriber for the MQTT tests and the soak benchmark.

`Broker` runs mosquitto on 127.0.0.1 with persistence, so it can be stopped (SIGTERM, which
saves the sessions) and started again on the same port as often as a test needs. `Subscriber`
keeps a persistent session (clean_session=False, subscribed at QoS 2): whatever a sink publishes
while the subscriber is away (a broker restart) is held for it, so no test depends on which
client reconnects first.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from .net import free_port

START_TIMEOUT = 15.0  # s for mosquitto to listen, and for the subscriber to subscribe


class ToolMissing(RuntimeError):
    """A program the MQTT tests need is not installed."""


def find_tool(name: str) -> str:
    """The path of `name` (mosquitto, mosquitto_passwd, openssl): on PATH, or where Debian puts
    it outside a user's PATH (/usr/sbin/mosquitto)."""
    for found in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if found and os.access(found, os.X_OK):
            return found
    raise ToolMissing(f"{name} is not installed: ./setup.sh --dev installs it (apt install mosquitto openssl)")


class Broker:
    """One mosquitto on 127.0.0.1:port (a free one by default); `settings` are extra
    mosquitto.conf lines (authentication, TLS). `log` is its log file (log_type all)."""

    def __init__(self, root: Path, port: int | None = None, settings: str = "allow_anonymous true\n") -> None:
        self.exe = find_tool("mosquitto")
        self.root, self.port = root, port if port is not None else free_port()
        (root / "db").mkdir(parents=True, exist_ok=True)
        self.log = root / "mosquitto.log"
        self.conf = root / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n{settings}"
            f"persistence true\npersistence_location {root / 'db'}/\n"
            f"log_dest file {self.log}\nlog_type all\n"
            f"user {pwd.getpwuid(os.geteuid()).pw_name}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start mosquitto and return once it accepts connections."""
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # mosquitto signals nothing when it listens: try to connect
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    log = self.log.read_text() if self.log.exists() else ""
                    raise RuntimeError(f"mosquitto exited ({self.proc.returncode}): {err}{log}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen on port {self.port} within {START_TIMEOUT} s") from None
                time.sleep(0.01)

    def stop(self) -> None:
        """SIGTERM by PID (mosquitto saves its sessions), SIGKILL if it does not exit; harmless
        when not running."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()

    def close(self) -> None:
        self.stop()


class Subscriber:
    """A paho client with a persistent session on `topics`; collects (topic, JSON payload)
    in arrival order, each message once."""

    def __init__(self, port: int, topics: Sequence[str], client_id: str = "kws-test-subscriber",
                 username: str = "", password: str = "", ca: str = "") -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.redelivered = 0
        self._topics = list(topics)
        self._seen: set[tuple[str, bytes]] = set()
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        if username:
            self.client.username_pw_set(username, password)
        if ca:
            self.client.tls_set(ca_certs=ca)
        self.client.reconnect_delay_set(0.2, 0.5)  # type: ignore[arg-type]  # floats work
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(START_TIMEOUT):
            self.close()
            raise RuntimeError(f"the MQTT subscriber never subscribed (port {port})")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe([(t, 2) for t in self._topics])

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._cond:
            if msg.dup and (msg.topic, msg.payload) in self._seen:
                # QoS 1 to us is at least once: a broker stopped before it read our PUBACK
                # resends the message (DUP set) when our session resumes.
                self.redelivered += 1
                return
            self._seen.add((msg.topic, msg.payload))
            self.messages.append((msg.topic, json.loads(msg.payload)))
            self._cond.notify_all()

    def snapshot(self) -> list[tuple[str, dict[str, Any]]]:
        with self._cond:
            return list(self.messages)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[str, dict[str, Any]]]:
        """The first `count` or more messages; AssertionError naming what came if fewer did
        within `timeout`."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.messages) >= count, timeout)
            got = list(self.messages)
        assert ok, f"got {len(got)} of {count} messages: {got}"
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
