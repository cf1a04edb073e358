"""`kws-stream run | slow-reader` and a stalled journald (issue 25 item 5), end to end.

The real daemon on the virtual microphone, the shared recordings, a real mosquitto and the
real metrics endpoint; its stdout (or stderr) is a real pipe that the test filled and then
stopped reading. Before: the stdout sink's thread blocked in write() for good, so detections
were neither written nor counted nor logged (kws_sink_dropped_total stayed 0 until 256 had
queued), and a full stderr blocked whichever thread logged, the daemon's start included.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import kws_command
from test_daemon import NotifySocket, play_clip
from test_mqtt import PREFIX, TOPICS, detections_of

from testsupport.broker import Broker, Subscriber
from testsupport.daemon_process import terminate, write_config
from testsupport.vmic import VirtualMic

WAIT = 20.0  # s: generous bounds; each wait ends as soon as its condition holds
RLU = ["right", "left", "up"]


@pytest.fixture
def mic16(tmp_path: Path) -> Iterator[VirtualMic]:
    with VirtualMic(tmp_path / "vmic", rate=16000, channels=1) as mic:
        yield mic


def full_pipe() -> tuple[int, int]:
    """(read end, write end) of a pipe filled to the brim: a reader that stopped reading."""
    r, w = os.pipe()
    flags = fcntl.fcntl(w, fcntl.F_GETFL)
    fcntl.fcntl(w, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        while True:
            os.write(w, b"x" * 4096)
    except BlockingIOError:
        pass
    fcntl.fcntl(w, fcntl.F_SETFL, flags)
    return r, w


def read_all(fd: int) -> bytes:
    """Everything left in a pipe whose writers are all gone."""
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


class Lines:
    """The lines of a pipe, read by a thread; wait for one matching a pattern."""

    def __init__(self, pipe: object) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: object) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            with self._cond:
                self.lines.append(line.decode().rstrip("\n"))
                self._cond.notify_all()

    def wait(self, pattern: str, count: int = 1, timeout: float = WAIT) -> list[str]:
        regex = re.compile(pattern)
        with self._cond:
            ok = self._cond.wait_for(lambda: len([x for x in self.lines if regex.search(x)]) >= count, timeout)
            found = [x for x in self.lines if regex.search(x)]
            assert ok, f"{len(found)} of {count} lines matching {pattern!r}:\n" + "\n".join(self.lines)
            return found

    def join(self) -> None:
        self._thread.join(WAIT)

    @property
    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)


def metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def daemon_env(mic: VirtualMic, cli_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**mic.env, **{k: cli_env[k] for k in ("XDG_DATA_HOME", "XDG_CONFIG_HOME")}, **extra}


def kill_if_running(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)


def test_a_stdout_nobody_reads_never_stops_mqtt_metrics_or_a_clean_stop(mic16, cli_env, tmp_path):
    broker = Broker(tmp_path / "broker")
    broker.start()
    sub = Subscriber(broker.port, TOPICS)
    conf = write_config(tmp_path / "k.toml", "[metrics]\nenabled = true\nport = 0\n"
                        f"[mqtt]\nenabled = true\nhost = \"127.0.0.1\"\nport = {broker.port}\n"
                        f"topic_prefix = \"{PREFIX}\"\nclient_id = \"kws-stall\"\n")
    r, w = full_pipe()
    proc = subprocess.Popen([*kws_command(), "run", "--config", str(conf), "--log-level", "info"],
                            stdout=w, stderr=subprocess.PIPE, env=daemon_env(mic16, cli_env))
    os.close(w)
    try:
        log = Lines(proc.stderr)
        port = int(re.search(r"address=127\.0\.0\.1:(\d+)", log.wait("event=metrics_listening")[0]).group(1))
        log.wait("event=ready")
        play_clip(mic16, "keywords/right_left_up.wav")
        got = sub.wait_for(6, timeout=WAIT)  # each detection on two topics
        assert [payload["keyword"] for topic, payload in got if topic == f"{PREFIX}/detection"] == RLU
        assert len(detections_of(got)) == 3
        values = metrics(port)
        assert sum(v for k, v in values.items() if k.startswith("kws_detections_total")) == 3.0
        # "right" waits for room in the pipe, "left" and "up" are dropped and counted
        assert values['kws_sink_dropped_total{sink="stdout"}'] == 2.0
        assert values['kws_sink_dropped_total{sink="mqtt"}'] == 0.0
        full = log.wait("event=stdout_full")
        assert len(full) == 1 and "keyword=left dropped_total=1" in full[0]
        assert terminate(proc, 10) == 0  # the unit allows 5 s
        log.join()
    finally:
        kill_if_running(proc)
        sub.close()
        broker.stop()
        left = read_all(r)
        os.close(r)
    assert "Traceback" not in log.text
    assert "event=stdout_full action=stopping undelivered=1 dropped_total=3" in log.text
    assert left.strip(b"x") == b""  # no line, and no piece of one, got into the full pipe


def test_a_stderr_nobody_reads_never_stops_spotting_and_what_waited_arrives_after(mic16, cli_env, tmp_path):
    notify = NotifySocket()
    r, w = full_pipe()
    proc = subprocess.Popen([*kws_command(), "run", "--log-level", "debug"], stdout=subprocess.PIPE, stderr=w,
                            env=daemon_env(mic16, cli_env, NOTIFY_SOCKET=str(notify.path)))
    os.close(w)
    reader: threading.Thread | None = None
    stderr: list[bytes] = []
    try:
        out = Lines(proc.stdout)
        notify.wait_for("READY=1", timeout=WAIT)  # before, the first log line blocked the start for good
        play_clip(mic16, "keywords/right_left_up.wav")
        found = out.wait('"keyword"', count=3)
        assert [re.search(r'"keyword": "(\w+)"', x).group(1) for x in found] == RLU
        # stderr is read again: what waited arrives, then the count of what was dropped
        reader = threading.Thread(target=lambda: stderr.append(read_all(r)))
        reader.start()
        assert terminate(proc, 10) == 0  # the unit allows 5 s
        out.join()
    finally:
        kill_if_running(proc)
        if reader is not None:
            reader.join(WAIT)
        os.close(r)
        notify.close()
    text = b"".join(stderr).lstrip(b"x").decode()
    # every line waited in the daemon (a run logs far less than its 64 KiB buffer; what is
    # dropped beyond it and the `event=log_dropped` count are test_sinks.py's) and arrived in order
    events = re.findall(r"event=(\w+)", text)
    assert events.index("start") < events.index("capture_started") < events.index("ready") < events.index("stopping")
    assert "Traceback" not in text
