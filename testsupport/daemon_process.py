"""Run the real `kws-stream run` as a subprocess and watch its output with timestamps."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any


class DaemonProcess:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                                     bufsize=1)
        self.stdout: queue.Queue[tuple[float, str]] = queue.Queue()
        self.stderr_lines: list[str] = []
        self._stderr_cond = threading.Condition()
        self._threads = [threading.Thread(target=self._read_stdout, args=(self.proc.stdout,), daemon=True),
                         threading.Thread(target=self._read_stderr, args=(self.proc.stderr,), daemon=True)]
        for t in self._threads:
            t.start()

    def _read_stdout(self, pipe: IO[str]) -> None:
        for line in pipe:
            self.stdout.put((time.monotonic(), line))

    def _read_stderr(self, pipe: IO[str]) -> None:
        for line in pipe:
            with self._stderr_cond:
                self.stderr_lines.append(line.rstrip("\n"))
                self._stderr_cond.notify_all()

    @property
    def stderr(self) -> str:
        with self._stderr_cond:
            return "\n".join(self.stderr_lines)

    def wait_log(self, pattern: str, timeout: float = 15.0, start: int = 0) -> str:
        """Wait for a stderr line matching `pattern` (at or after line index `start`)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._stderr_cond:
            while True:
                for line in self.stderr_lines[start:]:
                    if regex.search(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None and not self._threads[1].is_alive():
                    raise AssertionError(f"no log line matching {pattern!r}; stderr:\n{self.stderr}")
                self._stderr_cond.wait(remaining)

    def log_mark(self) -> int:
        with self._stderr_cond:
            return len(self.stderr_lines)

    def detections(self, count: int, timeout: float) -> list[tuple[float, dict]]:
        """The next `count` detections with the monotonic time each line was read."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            try:
                t, line = self.stdout.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"got {len(out)} of {count} detections: {out}; stderr:\n{self.stderr}") from None
            out.append((t, json.loads(line)))
        return out

    def no_detection_within(self, seconds: float) -> list[str]:
        """Lines that arrived within `seconds` (expected: none)."""
        got = []
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                got.append(self.stdout.get(timeout=remaining)[1])
            except queue.Empty:
                break
        return got

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def reload(self, pattern: str = "event=reloaded", timeout: float = 15.0) -> str:
        """SIGHUP, and the first stderr line matching `pattern` logged after it (the reload's
        outcome: `event=reloaded ...` or `event=reload_rejected ...`)."""
        mark = self.log_mark()
        self.signal(signal.SIGHUP)
        return self.wait_log(pattern, timeout, start=mark)

    def stop(self, timeout: float = 5.0) -> int:
        try:
            return terminate(self.proc, timeout)
        finally:
            for t in self._threads:
                t.join(5)


def terminate(proc: subprocess.Popen[Any], timeout: float) -> int:
    """SIGTERM, and the exit status within `timeout`. A process still running then is killed
    and reaped, and the status it died with (-9) returned: a stop that needed SIGKILL fails
    the caller's `== 0` check instead of hanging it or leaving a process behind."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
