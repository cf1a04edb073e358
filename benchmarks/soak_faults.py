"""The soak's side loads, each owned and stopped by the soak (benchmarks/soak.py):

- `CpuHog`: a `nice -n 19` busy loop in its own process beside the daemon, so the daemon
  competes for a core (niced so that other work on a shared machine still runs);
- `Scraper`: a Prometheus-like scraper reading /metrics every few seconds;
- `Vanishers`: Wyoming clients that connect, stream some room tone and go away without
  an audio-stop (sometimes before sending anything at all).
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

import numpy as np

from kws_stream.features import MICRONET

HOG_CODE = "while True:\n    pass\n"


class CpuHog:
    """One niced busy-loop process; `cpu_s` is the CPU time it got (it really ran)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.cpu_s = 0.0

    def start(self) -> None:
        self.proc = subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", HOG_CODE])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            self.cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class Scraper:
    """GET /metrics every `every` s on its own thread; counts answers and failures."""

    def __init__(self, port: int, every: float = 2.0) -> None:
        self.port, self.every = port, every
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-scraper")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10).read()
                if b"kws_" not in body:
                    raise ValueError("no kws_ metric in the answer")
                self.ok += 1
            except (OSError, ValueError) as exc:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}")


class LoopThread:
    """One owned thread running `_main` in its own event loop until `stop()` (joined)."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name=name)

    async def _main(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


class Vanishers(LoopThread):
    """Wyoming clients that come and go: connect, send detect + audio-start and 0-5 s of
    room tone at real-time pace, then disconnect without audio-stop; 1-20 s apart."""

    CHUNK = MICRONET.sample_rate // 10  # 100 ms

    def __init__(self, port: int, room: np.ndarray, seed: int) -> None:
        self.port, self.room = port, room
        self.rng = random.Random(seed + 7919)
        self.connections = 0
        self.errors: list[str] = []
        super().__init__("soak-vanishers")

    async def _main(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(self.rng.uniform(1.0, 20.0))
            if self._stop.is_set():
                break
            try:
                await self._visit(self.rng.uniform(0.0, 5.0))
            except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")

    async def _visit(self, seconds: float) -> None:
        from wyoming.audio import AudioChunk, AudioStart
        from wyoming.client import AsyncTcpClient
        from wyoming.wake import Detect

        client: Any = AsyncTcpClient("127.0.0.1", self.port)
        await client.connect()
        self.connections += 1
        try:
            if seconds < 0.5:
                return  # connect and vanish at once
            await client.write_event(Detect(names=None).event())
            await client.write_event(AudioStart(rate=MICRONET.sample_rate, width=2, channels=1).event())
            t0 = time.monotonic()
            n = int(seconds * MICRONET.sample_rate) // self.CHUNK
            for k in range(n):
                if self._stop.is_set():
                    return
                delay = t0 + k * self.CHUNK / MICRONET.sample_rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                off = (k * self.CHUNK) % max(1, len(self.room) - self.CHUNK)
                await client.write_event(AudioChunk(rate=MICRONET.sample_rate, width=2, channels=1,
                                                    audio=self.room[off:off + self.CHUNK].tobytes()).event())
        finally:
            await client.disconnect()  # no audio-stop: the client just goes away
