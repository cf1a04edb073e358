"""A live soak of the whole service: does it stay right and flat for half an hour?

    python -m benchmarks.soak --minutes 30 [--seed 0] [--json OUT]

What runs (all real, all private, all on 127.0.0.1, all ended by their own PIDs):

- a PulseAudio virtual microphone (testsupport/vmic.py) fed in real time;
- a mosquitto broker on a free port (persistence on, stopped with SIGTERM so the
  subscriber's persistent session survives a restart), and a paho subscriber (QoS 1,
  clean_session=False) on `<prefix>/detection` and `hermes/hotword/+/detected`;
- `python -m kws_stream run --config soak.toml` with [mqtt] and [metrics] on, at the
  defaults otherwise (command mode on, threshold 0.7);
- `python -m kws_stream serve wyoming` with a `wyoming` library client that streams
  audio at real-time pace, a keyword clip after a pause of 1-20 s in each round, and
  expects exactly that clip's keywords; it reconnects every few rounds.

The feeder plays the shared keyword clips (single words and the multi-word ones, every
clip once per shuffled round) after pauses drawn log-uniformly from 1-60 s (seeded):
room tone (negatives/noise_1000ms.wav tiled, scaled to -60 dBFS RMS), digital silence,
or digital silence then room tone. Every `--sighup-every` seconds the daemon gets a
SIGHUP, in a cycle of three: a changed threshold (0.70 <-> 0.65: only ever at or below the
default, so no command can legitimately be lost to it), a changed [mqtt] client_id (the MQTT
sink is rebuilt) and an unchanged file; the broker is stopped for `--broker-down` seconds
`--broker-restarts` times; the microphone is removed (pactl unload-module) for `--mic-down`
seconds `--mic-unplugs` times, between two commands (the feeder waits for the daemon's
`device_lost` and `device_back`); and beside it all run a `nice -n 19` CPU hog, a /metrics
scraper every `--scrape-every` s and Wyoming clients that connect, stream 0-5 s of room
tone and vanish without an audio-stop (benchmarks/soak_faults.py).

Every `--sample-every` seconds it samples VmRSS, threads and open fds of the daemon
and of the Wyoming server (and the daemon's `kws_detections_total` from /metrics).

A command is found on stdout when a JSON line with its keyword is read between the
start of its word and `MAX_LATENCY_S` after its end (each line matches one command);
found on MQTT when the same detection (equal JSON) arrives on `<prefix>/detection` and
its Hermes message on `hermes/hotword/<keyword>/detected` (MQTT may be late: the sink
queues while the broker is down and reconnects with a backoff of up to 30 s).

Verdict PASS when: every command is found on stdout and on MQTT, there is no extra
detection anywhere (stdout, MQTT, Wyoming), every Wyoming round got its keywords or exactly
what `kws-stream detect` finds in the same audio (the model's own misses, scores under the
threshold, are listed and counted apart: the soak tests the service, not the model), every
SIGHUP was answered by `event=reloaded`, both processes ran to the end and exited 0
without a traceback, every /metrics scrape was answered, every microphone removal was
survived (the feeder fails the run otherwise), and RSS, threads and fds are flat for both processes. Flat: the
median of the last quarter of the samples after the warm-up (`--warmup`, 30 s) is at most
FLAT_RSS_MB / FLAT_THREADS / FLAT_FDS above the median of the first quarter.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io.wavfile

import kws_stream  # noqa: F401  (pins OPENBLAS/OMP/MKL threads before numpy is imported)
from kws_stream.features import MICRONET
from testsupport.broker import Broker, Subscriber, ToolMissing
from testsupport.daemon_process import terminate
from testsupport.net import free_port

from . import procstat
from .soak_faults import CpuHog, LoopThread, Scraper, Vanishers

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KWS_SHARED", REPO.parent / "shared"))
AUDIO = SHARED / "audio"
RATE = MICRONET.sample_rate
KWS = [sys.executable, "-m", "kws_stream"]

# Each shared keyword clip and the words it holds, in order; the multi-word clips are
# 1 s clips joined back to back, so word k lies in second k of the clip.
CLIPS: dict[str, tuple[str, ...]] = {
    "yes.wav": ("yes",),
    "yes_1000ms.wav": ("yes",),
    "no_1000ms.wav": ("no",),
    "down.wav": ("down",),
    "right.wav": ("right",),
    "right_left_up.wav": ("right", "left", "up"),
    "yes_no_go_stop.wav": ("yes", "no", "go", "stop"),
}
ROOM_TONE_DBFS = -60.0
PAUSE_KINDS = ("room", "silence", "silence+room")
MAX_LATENCY_S = 5.0  # a stdout line later than this after its word counts as missing
MQTT_DRAIN_S = 45.0  # at the end, wait this long for MQTT to catch up (sink backoff <= 30 s)
FLAT_RSS_MB = 3.0  # issue 25: RSS within 3 MB of the first quarter's
FLAT_THREADS = 2
FLAT_FDS = 4
PREFIX = "kws-soak"
THRESHOLDS = (0.70, 0.65)  # SIGHUP alternates between these (never above the default)
UNPLUG_AFTER_S = 3.0  # room tone played after a command before the microphone is removed
MQTT_CLIENT_IDS = ("kws-soak", "kws-soak-b")  # and between these: a changed [mqtt] rebuilds the sink
START_TIMEOUT_S = 60.0  # model load on a loaded machine


# ----------------------------------------------------------------------------- audio


def read_clip(path: Path) -> np.ndarray:
    rate, data = scipy.io.wavfile.read(path)
    if rate != RATE or data.dtype != np.int16:
        raise SystemExit(f"{path}: expected 16 kHz int16, got {rate} Hz {data.dtype}")
    return data if data.ndim == 1 else data.mean(axis=1).astype(np.int16)


class Sounds:
    """The clips and the pause generators (room tone, digital silence)."""

    def __init__(self, audio: Path = AUDIO) -> None:
        self.clips = {name: read_clip(audio / "keywords" / name) for name in CLIPS}
        noise = read_clip(audio / "negatives" / "noise_1000ms.wav").astype(np.float64)
        noise -= noise.mean()
        gain = 10 ** (ROOM_TONE_DBFS / 20) * 32768 / math.sqrt(float(np.mean(noise ** 2)))
        self.noise = noise * gain

    def room(self, seconds: float, offset: int = 0) -> np.ndarray:
        n = int(round(seconds * RATE))
        idx = (np.arange(n) + offset) % len(self.noise)
        return np.round(self.noise[idx]).astype(np.int16)

    def pause(self, seconds: float, kind: str, offset: int = 0) -> np.ndarray:
        n = int(round(seconds * RATE))
        if kind == "room":
            return self.room(seconds, offset)
        if kind == "silence":
            return np.zeros(n, np.int16)
        half = n // 2
        return np.concatenate([np.zeros(half, np.int16), self.room((n - half) / RATE, offset)])


@dataclass(frozen=True)
class Command:
    """One clip after one pause, as planned."""

    index: int
    clip: str
    words: tuple[str, ...]
    pause_s: float
    pause_kind: str


def plan(seed: int, count: int, min_pause: float, max_pause: float,
         clips: Sequence[str] = tuple(CLIPS)) -> list[Command]:
    """`count` commands: every clip once per shuffled round, pauses log-uniform in [min, max]."""
    rng = np.random.default_rng(seed)
    out: list[Command] = []
    order: list[str] = []
    for i in range(count):
        if not order:
            order = [clips[j] for j in rng.permutation(len(clips))]
        clip = order.pop()
        pause = float(math.exp(rng.uniform(math.log(min_pause), math.log(max_pause))))
        out.append(Command(i, clip, CLIPS[clip], round(pause, 2), PAUSE_KINDS[int(rng.integers(len(PAUSE_KINDS)))]))
    return out


# ----------------------------------------------------------------------------- matching


@dataclass
class Expected:
    """One word the daemon must report: where it was in time, and what answered it."""

    command: int
    clip: str
    keyword: str
    pause_s: float
    pause_kind: str
    start: float  # monotonic: the word's second of audio began
    end: float
    stdout: dict[str, Any] | None = None
    read_at: float | None = None
    mqtt: bool = False
    hermes: bool = False

    @property
    def latency(self) -> float | None:
        return None if self.read_at is None else self.read_at - self.end


def match_stdout(expected: list[Expected], lines: list[tuple[float, dict[str, Any]]],
                 max_latency: float = MAX_LATENCY_S) -> list[tuple[float, dict[str, Any]]]:
    """Give each detection line to the earliest unmatched word with its keyword whose time
    window holds the read time; returns the lines that matched nothing (extras)."""
    extra = []
    for read_at, det in lines:
        for e in expected:
            if e.stdout is None and e.keyword == det.get("keyword") and e.start <= read_at <= e.end + max_latency:
                e.stdout, e.read_at = det, read_at
                break
        else:
            extra.append((read_at, det))
    return extra


def match_mqtt(expected: list[Expected],
               messages: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Mark each word whose stdout detection also came on MQTT (the same JSON on the
    detection topic, and a Hermes message for that keyword); returns unmatched messages."""
    detection_topic = f"{PREFIX}/detection"
    dets = [(i, p) for i, (t, p) in enumerate(messages) if t == detection_topic]
    hermes = [(i, t, p) for i, (t, p) in enumerate(messages) if t.startswith("hermes/hotword/")]
    used: set[int] = set()
    for e in expected:
        if e.stdout is None:
            continue
        for i, p in dets:
            if i not in used and p == e.stdout:
                used.add(i)
                e.mqtt = True
                break
        for i, t, p in hermes:
            if i not in used and t == f"hermes/hotword/{e.keyword}/detected" and p.get("modelId") == e.keyword:
                used.add(i)
                e.hermes = True
                break
    return [m for i, m in enumerate(messages) if i not in used]


def flat(values: Sequence[float], tolerance: float) -> tuple[bool, float, float]:
    """(flat?, first-quarter median, last-quarter median): flat when the last quarter's
    median is at most `tolerance` above the first quarter's (at least one sample each)."""
    if not values:
        return False, float("nan"), float("nan")
    q = max(1, len(values) // 4)
    first, last = statistics.median(values[:q]), statistics.median(values[-q:])
    return last - first <= tolerance, first, last


# ----------------------------------------------------------------------------- processes


class LoggedProcess:
    """A subprocess whose stdout lines (with read times) and stderr lines are collected by
    two owned reader threads, joined in `stop()`."""

    def __init__(self, args: list[str], env: dict[str, str], name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, text=True, bufsize=1)
        self.stdout: list[tuple[float, str]] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._read, args=(self.proc.stdout, True), name=f"{name}-out"),
                         threading.Thread(target=self._read, args=(self.proc.stderr, False), name=f"{name}-err")]
        for t in self._threads:
            t.start()

    def _read(self, pipe: Any, is_stdout: bool) -> None:
        for line in pipe:
            with self._cond:
                if is_stdout:
                    self.stdout.append((time.monotonic(), line))
                else:
                    self.stderr.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_log(self, pattern: str, timeout: float, start: int = 0) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.stderr[start:]:
                    if regex.search(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    tail = "\n".join(self.stderr[-20:])
                    raise RuntimeError(f"{self.name}: no log line matching {pattern!r} "
                                       f"(exit {self.proc.poll()}):\n{tail}")
                self._cond.wait(min(remaining, 1.0))

    def stdout_lines(self) -> list[tuple[float, str]]:
        with self._cond:
            return list(self.stdout)

    def stderr_lines(self) -> list[str]:
        with self._cond:
            return list(self.stderr)

    def stop(self) -> int:
        status = terminate(self.proc, 10.0)
        for t in self._threads:
            t.join(10)
        return status


# ----------------------------------------------------------------------------- Wyoming client


@dataclass
class WyomingRound:
    index: int
    clip: str
    pause_s: float
    expected: tuple[str, ...]
    got: list[str] = field(default_factory=list)
    error: str = ""
    offline: list[str] | None = None  # for a wrong round: what `kws-stream detect` finds in its audio

    @property
    def ok(self) -> bool:
        return not self.error and list(self.expected) == self.got

    @property
    def model_miss(self) -> bool:
        """Wrong, but the server said exactly what `detect` says on the same audio: the
        model's own miss (a score under threshold), not something the service lost."""
        return not self.ok and not self.error and self.offline == self.got


def wyoming_rounds(seed: int, max_pause: float, clips: Sequence[str] = tuple(CLIPS)) -> Iterator[tuple[int, str, float]]:
    """The Wyoming client's rounds, endless: (index, clip, pause before it in s, log-uniform
    in [1, max_pause]); seeded apart from the feeder's plan."""
    rng = np.random.default_rng(seed + 1000)
    for i in itertools.count():
        clip = clips[int(rng.integers(len(clips)))]
        yield i, clip, float(math.exp(rng.uniform(0, math.log(max_pause))))


def wyoming_round_audio(sounds: Sounds, clip: str, pause: float) -> np.ndarray:
    """One round's audio: room tone, the clip, 1 s of room tone."""
    return np.concatenate([sounds.room(pause), sounds.clips[clip], sounds.room(1.0)])


class WyomingClient(LoopThread):
    """Streams rounds (pause, clip, 1 s of room tone) at real-time pace in 100 ms chunks,
    audio-start to audio-stop, then reads the answers up to a pong; a new connection every
    `ROUNDS_PER_CONNECTION` rounds. One owned thread with its own event loop."""

    ROUNDS_PER_CONNECTION = 4
    CHUNK = RATE // 10

    def __init__(self, port: int, sounds: Sounds, seed: int, max_pause: float,
                 clips: Sequence[str] = tuple(CLIPS)) -> None:
        self.port, self.sounds, self.max_pause, self.clips, self.seed = port, sounds, max_pause, list(clips), seed
        self.rounds: list[WyomingRound] = []
        self.connections = 0
        super().__init__("wyoming-client")

    async def _main(self) -> None:
        from wyoming.client import AsyncTcpClient

        client: Any = None
        on_conn = 0
        rounds = wyoming_rounds(self.seed, self.max_pause, self.clips)
        while not self._stop.is_set():
            i, clip, pause = next(rounds)
            rnd = WyomingRound(i, clip, pause, CLIPS[clip])
            try:
                if client is None or on_conn >= self.ROUNDS_PER_CONNECTION:
                    if client is not None:
                        await client.disconnect()
                    client = AsyncTcpClient("127.0.0.1", self.port)
                    await client.connect()
                    self.connections += 1
                    on_conn = 0
                on_conn += 1
                audio = wyoming_round_audio(self.sounds, clip, pause)
                if not await self._round(client, audio, rnd):
                    break  # stopped mid-round: not counted
            except (TimeoutError, OSError, ConnectionError, asyncio.IncompleteReadError) as exc:
                rnd.error = f"{type(exc).__name__}: {exc}"
                client = None
            self.rounds.append(rnd)
        if client is not None:
            try:
                await client.disconnect()
            except OSError:
                pass

    async def _round(self, client: Any, audio: np.ndarray, rnd: WyomingRound) -> bool:
        from wyoming.audio import AudioChunk, AudioStart, AudioStop
        from wyoming.ping import Ping, Pong
        from wyoming.wake import Detect, Detection, NotDetected

        await client.write_event(Detect(names=None).event())
        await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
        t0 = time.monotonic()
        for k, off in enumerate(range(0, len(audio), self.CHUNK)):
            if self._stop.is_set():
                return False
            delay = t0 + k * self.CHUNK / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # real-time pacing, as a microphone would send
            await client.write_event(AudioChunk(rate=RATE, width=2, channels=1,
                                                audio=audio[off:off + self.CHUNK].tobytes()).event())
        await client.write_event(AudioStop().event())
        await client.write_event(Ping(text="end").event())
        while True:
            event = await asyncio.wait_for(client.read_event(), 30)
            if event is None:
                raise ConnectionError("the server closed the connection")
            if Pong.is_type(event.type):
                return True
            if Detection.is_type(event.type):
                rnd.got.append(str(Detection.from_event(event).name))
            elif not NotDetected.is_type(event.type):
                rnd.error = f"unexpected event {event.type}"


# ----------------------------------------------------------------------------- sampling


@dataclass
class Sample:
    t: float  # seconds since the soak started
    rss_mb: float
    threads: int
    fds: int
    wy_rss_mb: float
    wy_threads: int
    wy_fds: int
    metrics_detections: float | None


def proc_sample(pid: int) -> tuple[float, int, int]:
    """(VmRSS MB, threads, open fds) of one process from /proc."""
    return procstat.memory(pid).rss_mb, procstat.thread_count(pid), len(os.listdir(f"/proc/{pid}/fd"))


def scrape_detections(port: int | None) -> float | None:
    if port is None:
        return None
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    return sum(float(m.group(1)) for m in re.finditer(r"^kws_detections_total\{[^}]*\} (\S+)$", text, re.M))


# ----------------------------------------------------------------------------- the soak


@dataclass
class Options:
    minutes: float = 30.0
    seed: int = 0
    min_pause: float = 1.0
    max_pause: float = 60.0
    sample_every: float = 30.0
    sighup_every: float = 180.0
    broker_restarts: int = 2
    broker_down: float = 5.0
    wyoming_max_pause: float = 20.0
    clips: tuple[str, ...] = tuple(CLIPS)
    mqtt_drain: float = MQTT_DRAIN_S
    workdir: Path | None = None
    mic_unplugs: int = 2  # the microphone removed and re-added (pactl) this many times
    mic_down: float = 5.0  # seconds it stays removed each time
    hog: bool = True  # a `nice -n 19` busy loop beside the daemon
    scrape_every: float = 2.0  # a /metrics scraper (0: only the samples' scrapes)
    vanishers: bool = True  # Wyoming clients that connect, stream a little and vanish
    warmup_s: float = 30.0  # samples before this are not judged for flatness


@dataclass
class Result:
    options: Options
    expected: list[Expected]
    extra_stdout: list[tuple[float, dict[str, Any]]]
    extra_mqtt: list[tuple[str, dict[str, Any]]]
    samples: list[Sample]
    sighups: list[tuple[float, str]]
    reloads: int
    reload_rejected: int
    broker_restarts: list[float]
    wyoming: list[WyomingRound]
    wyoming_connections: int
    daemon_status: int | None
    daemon_alive_at_end: bool
    wyoming_status: int | None
    tracebacks: int
    daemon_events: dict[str, int]
    mqtt_redelivered: int
    duration_s: float
    mic: dict[str, float] = field(default_factory=dict)  # the feeder's lateness and counters
    mic_unplugs: list[float] = field(default_factory=list)
    hog_cpu_s: float = 0.0
    scrapes: int = 0
    scrape_failures: list[str] = field(default_factory=list)
    vanisher_connections: int = 0
    vanisher_errors: list[str] = field(default_factory=list)
    verdict: bool = False
    reasons: list[str] = field(default_factory=list)


def restart_times(duration: float, count: int, sighup_every: float) -> list[float]:
    """Broker restarts spread evenly over the run, each moved to the middle between two
    SIGHUPs: a reload while the sink is still reconnecting is another scenario (see the
    Soak section of docs/benchmarks.md), not this one."""
    out = []
    for i in range(count):
        t = duration * (i + 1) / (count + 1)
        out.append(math.floor(t / sighup_every) * sighup_every + sighup_every / 2)
    return out


def _config_text(port: int, threshold: float, client_id: str = "kws-soak") -> str:
    return (f"[detection]\nthreshold = {threshold:.2f}\n\n[mqtt]\nenabled = true\nhost = \"127.0.0.1\"\n"
            f"port = {port}\nclient_id = \"{client_id}\"\ntopic_prefix = \"{PREFIX}\"\nqos = 1\n\n"
            f"[metrics]\nenabled = true\nport = 0\n\n[service]\nlog_level = \"info\"\n")


def _vmic_class() -> Any:
    from testsupport.vmic import VirtualMic

    return VirtualMic


def _env(extra: dict[str, str], config_home: Path) -> dict[str, str]:
    """The child environment: the vmic's PulseAudio variables, the user's model directory
    (the vmic env points HOME elsewhere), and a private config home."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    env = dict(extra)
    env.update(XDG_DATA_HOME=data_home, XDG_CONFIG_HOME=str(config_home), PYTHONUNBUFFERED="1")
    env.pop("STATE_DIRECTORY", None)
    return env


def run_soak(opts: Options, log: Callable[[str], None] = print) -> Result:
    """Run the soak; `log` gets progress lines."""
    sounds = Sounds()
    duration = opts.minutes * 60
    commands = plan(opts.seed, 100000, opts.min_pause, opts.max_pause, opts.clips)
    own_tmp = opts.workdir is None
    work = Path(tempfile.mkdtemp(prefix="kws-soak-")) if opts.workdir is None else Path(opts.workdir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "config").mkdir(exist_ok=True)
    try:
        broker = Broker(work / "mqtt")
    except ToolMissing as exc:
        raise SystemExit(str(exc)) from None
    broker.start()
    subscriber: Subscriber | None = None
    daemon: LoggedProcess | None = None
    wyoming: LoggedProcess | None = None
    client: WyomingClient | None = None
    hog = CpuHog()
    scraper: Scraper | None = None
    vanishers: Vanishers | None = None
    mic = _vmic_class()(work / "vmic", rate=RATE, channels=1)
    try:
        subscriber = Subscriber(broker.port, (f"{PREFIX}/#", "hermes/hotword/+/detected"), client_id="kws-soak-subscriber")
        mic.start()
        conf = work / "soak.toml"
        conf.write_text(_config_text(broker.port, THRESHOLDS[0]))
        env = _env(mic.env, work / "config")
        daemon = LoggedProcess([*KWS, "run", "--config", str(conf)], env, "daemon")
        wy_port = free_port()
        wyoming = LoggedProcess([*KWS, "serve", "wyoming", "--uri", f"tcp://127.0.0.1:{wy_port}"], env, "wyoming")
        daemon.wait_log("event=ready", START_TIMEOUT_S)
        m = re.search(r"address=127\.0\.0\.1:(\d+)", daemon.wait_log("event=metrics_listening", 5))
        metrics_port = int(m.group(1)) if m else None
        wyoming.wait_log("event=listening", START_TIMEOUT_S)
        client = WyomingClient(wy_port, sounds, opts.seed, opts.wyoming_max_pause, opts.clips)
        client.start()
        if opts.vanishers:
            vanishers = Vanishers(wy_port, sounds.room(10.0), opts.seed)
            vanishers.start()
        if opts.scrape_every > 0 and metrics_port is not None:
            scraper = Scraper(metrics_port, opts.scrape_every)
            scraper.start()
        if opts.hog:
            hog.start()
        log(f"soak: {opts.minutes:g} min, seed {opts.seed}, daemon pid {daemon.proc.pid}, "
            f"wyoming pid {wyoming.proc.pid}, broker port {broker.port}, work {work}")

        t0 = time.monotonic()
        end = t0 + duration
        expected: list[Expected] = []
        feeder_done = threading.Event()
        stop_feeding = threading.Event()  # a process died: no point in playing on
        feeder_error: list[BaseException] = []
        unplugs: list[float] = []
        unplug_at = [t0 + duration * (i + 1) / (opts.mic_unplugs + 1) + opts.sighup_every / 4
                     for i in range(opts.mic_unplugs)]

        def unplug_replug() -> None:
            """Between two commands: remove the microphone (pactl unload-module), wait for the
            daemon to notice, keep it away `mic_down` s, add it back, wait until the daemon is back."""
            assert daemon is not None
            # the pause after the last command first: a command cut off by the removal is
            # another scenario (tests/test_daemon.py), not this one
            mic.play(sounds.room(UNPLUG_AFTER_S)).wait(UNPLUG_AFTER_S + 60)
            mark = len(daemon.stderr_lines())
            unplugs.append(round(time.monotonic() - t0, 1))
            log(f"soak: microphone removed at {unplugs[-1]:.0f}s for {opts.mic_down:g}s")
            mic.unplug()
            daemon.wait_log("event=device_lost", 60, mark)
            stop_feeding.wait(opts.mic_down)
            mic.replug()
            daemon.wait_log("event=device_back", 120, mark)

        def feed() -> None:
            try:
                offset = 0
                for cmd in commands:
                    if unplug_at and time.monotonic() >= unplug_at[0] and time.monotonic() < end - 20:
                        unplug_at.pop(0)
                        unplug_replug()
                    clip = sounds.clips[cmd.clip]
                    if time.monotonic() + cmd.pause_s + len(clip) / RATE + 2 > end or stop_feeding.is_set():
                        break
                    mic.play(sounds.pause(cmd.pause_s, cmd.pause_kind, offset))
                    offset += int(cmd.pause_s * RATE)
                    handle = mic.play(clip)
                    written = handle.wait(cmd.pause_s + len(clip) / RATE + 60)
                    if written is None or handle.started_at is None:
                        raise RuntimeError(f"the virtual microphone did not play command {cmd.index}")
                    for k, word in enumerate(cmd.words):
                        expected.append(Expected(cmd.index, cmd.clip, word, cmd.pause_s, cmd.pause_kind,
                                                 handle.started_at + k, handle.started_at + k + 1))
                tail = mic.play(sounds.room(2.0))  # the quiet after the last command
                tail.wait(60)
            except BaseException as exc:  # reported by the main thread
                feeder_error.append(exc)
            finally:
                feeder_done.set()

        feeder = threading.Thread(target=feed, name="soak-feeder")
        feeder.start()

        samples: list[Sample] = []
        sighups: list[tuple[float, str]] = []
        restarts: list[float] = []
        threshold, client_id = THRESHOLDS[0], MQTT_CLIENT_IDS[0]
        next_sample = t0
        next_sighup = t0 + opts.sighup_every
        restart_at = [t0 + t for t in restart_times(duration, opts.broker_restarts, opts.sighup_every)]

        def take_sample() -> None:
            assert daemon is not None and wyoming is not None
            try:
                d, w = proc_sample(daemon.proc.pid), proc_sample(wyoming.proc.pid)
            except OSError:  # it just exited: the main loop notices and reports it
                return
            s = Sample(round(time.monotonic() - t0, 1), round(d[0], 1), d[1], d[2], round(w[0], 1), w[1], w[2],
                       scrape_detections(metrics_port))
            samples.append(s)
            log(f"sample t={s.t:.0f}s daemon rss={s.rss_mb}MB threads={s.threads} fds={s.fds} | "
                f"wyoming rss={s.wy_rss_mb}MB threads={s.wy_threads} fds={s.wy_fds} | "
                f"stdout={len(daemon.stdout_lines())} wyoming_rounds={len(client.rounds) if client else 0}")

        while not feeder_done.is_set():
            now = time.monotonic()
            if daemon.proc.poll() is not None or wyoming.proc.poll() is not None:
                log(f"soak: a process died (daemon {daemon.proc.poll()}, wyoming {wyoming.proc.poll()})")
                stop_feeding.set()
                break
            if now >= next_sample:
                take_sample()
                next_sample += opts.sample_every
            if now >= next_sighup and now < end - 5:
                n = len(sighups)
                # a cycle of three: a changed threshold, a changed [mqtt] (the sink is rebuilt), unchanged
                if n % 3 == 0:
                    threshold = THRESHOLDS[(n // 3 + 1) % 2]
                    what = f"threshold={threshold:.2f}"
                elif n % 3 == 1:
                    client_id = MQTT_CLIENT_IDS[(n // 3 + 1) % 2]
                    what = f"mqtt.client_id={client_id}"
                else:
                    what = "unchanged"
                conf.write_text(_config_text(broker.port, threshold, client_id))
                daemon.proc.send_signal(signal.SIGHUP)
                sighups.append((round(now - t0, 1), what))
                log(f"soak: SIGHUP {len(sighups)} at {now - t0:.0f}s ({what})")
                next_sighup += opts.sighup_every
            if restart_at and now >= restart_at[0]:
                restart_at.pop(0)
                log(f"soak: broker stopped at {now - t0:.0f}s for {opts.broker_down:g}s")
                broker.stop()
                feeder_done.wait(opts.broker_down)  # the broker's downtime; audio keeps flowing
                broker.start()
                restarts.append(round(now - t0, 1))
            feeder_done.wait(max(0.05, min(0.5, next_sample - time.monotonic())))
        feeder.join()
        if feeder_error:
            raise RuntimeError(f"feeder failed: {feeder_error[0]!r}") from feeder_error[0]

        # The last words: wait out their latency window, then let MQTT catch up.
        last_end = max((e.end for e in expected), default=time.monotonic())
        while time.monotonic() < last_end + MAX_LATENCY_S and daemon.proc.poll() is None:
            time.sleep(0.2)
        deadline = time.monotonic() + opts.mqtt_drain
        while time.monotonic() < deadline:
            if len([m for m in subscriber.snapshot() if m[0] == f"{PREFIX}/detection"]) >= len(daemon.stdout_lines()):
                break
            time.sleep(0.2)
        alive = daemon.proc.poll() is None and wyoming.proc.poll() is None
        if alive:
            take_sample()
        client.stop()
        for side in (vanishers, scraper):
            if side is not None:
                side.stop()
        hog.stop()
        duration_s = time.monotonic() - t0
        lines = []
        for read_at, line in daemon.stdout_lines():
            try:
                lines.append((read_at, json.loads(line)))
            except json.JSONDecodeError:
                lines.append((read_at, {"keyword": None, "unparsed": line}))
        extra_stdout = match_stdout(expected, lines)
        extra_mqtt = match_mqtt(expected, subscriber.snapshot())
        daemon_alive = daemon.proc.poll() is None
        daemon_status = daemon.stop()
        wyoming_status = wyoming.stop()
        err = daemon.stderr_lines() + wyoming.stderr_lines()
        events: dict[str, int] = {}
        for line in daemon.stderr_lines():
            m = re.search(r"event=(\w+)", line) or re.search(r"level=(ERROR)", line)  # paho logs without event=
            if m:
                key = m.group(1) if m.group(1) != "ERROR" else "error_without_event"
                events[key] = events.get(key, 0) + 1
        result = Result(opts, expected, extra_stdout, extra_mqtt, samples, sighups, events.get("reloaded", 0),
                        events.get("reload_rejected", 0), restarts, list(client.rounds), client.connections,
                        daemon_status, daemon_alive, wyoming_status, sum("Traceback" in line for line in err),
                        events, subscriber.redelivered, round(duration_s, 1),
                        {"max_late_s": round(mic.max_late_s, 3), **{k: float(v) for k, v in mic.stats.items()
                                                                     if k in ("resyncs", "clip_wait_ticks", "eagain")}},
                        mic_unplugs=unplugs, hog_cpu_s=round(hog.cpu_s, 1),
                        scrapes=scraper.ok if scraper else 0,
                        scrape_failures=list(scraper.failures) if scraper else [],
                        vanisher_connections=vanishers.connections if vanishers else 0,
                        vanisher_errors=list(vanishers.errors) if vanishers else [])
        offline_answers(result.wyoming, sounds, env, work)
        judge(result)
        (work / "daemon.stderr").write_text("\n".join(daemon.stderr_lines()) + "\n")
        (work / "wyoming.stderr").write_text("\n".join(wyoming.stderr_lines()) + "\n")
        return result
    finally:
        if client is not None:
            client.stop()
        for side in (vanishers, scraper):
            if side is not None:
                side.stop()
        hog.stop()
        for p in (daemon, wyoming):
            if p is not None and p.proc.poll() is None:
                p.stop()
        if subscriber is not None:
            subscriber.close()
        broker.stop()
        mic.stop()
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)


def offline_answers(rounds: Sequence[WyomingRound], sounds: Sounds, env: dict[str, str], work: Path) -> None:
    """For each wrong round, what `kws-stream detect` (same config, same model) finds in the
    very audio the client streamed: a round the service got wrong differs from it."""
    for w in rounds:
        if w.ok or w.error:
            continue
        path = work / f"wyoming-round-{w.index}.wav"
        scipy.io.wavfile.write(path, RATE, wyoming_round_audio(sounds, w.clip, w.pause_s))
        out = subprocess.run([*KWS, "detect", str(path)], env=env, capture_output=True, text=True, timeout=300)
        w.offline = [json.loads(line)["keyword"] for line in out.stdout.splitlines() if line.strip()]


def warm(r: Result) -> list[Sample]:
    """The samples flatness is judged on: those after the warm-up (first model runs, first
    Wyoming streams, allocator pools filling up)."""
    return [s for s in r.samples if s.t >= r.options.warmup_s]


def judge(r: Result) -> None:
    """Set r.verdict and r.reasons (see the module docstring)."""
    reasons = []
    missing = [e for e in r.expected if e.stdout is None]
    if not r.expected:
        reasons.append("no command was played")
    if missing:
        reasons.append(f"{len(missing)} of {len(r.expected)} commands missing on stdout")
    no_mqtt = [e for e in r.expected if e.stdout is not None and not (e.mqtt and e.hermes)]
    if no_mqtt:
        reasons.append(f"{len(no_mqtt)} stdout detections missing on MQTT")
    if r.extra_stdout:
        reasons.append(f"{len(r.extra_stdout)} extra detections on stdout")
    if r.extra_mqtt:
        reasons.append(f"{len(r.extra_mqtt)} extra MQTT messages")
    bad_rounds = [w for w in r.wyoming if not w.ok and not w.model_miss]
    if bad_rounds:
        reasons.append(f"{len(bad_rounds)} of {len(r.wyoming)} Wyoming rounds wrong (detect on the same audio differs)")
    if not r.wyoming:
        reasons.append("no Wyoming round completed")
    if r.reloads != len(r.sighups):
        reasons.append(f"{len(r.sighups)} SIGHUPs but {r.reloads} reloads logged")
    if not r.daemon_alive_at_end or r.daemon_status != 0:
        reasons.append(f"daemon alive at end {r.daemon_alive_at_end}, exit {r.daemon_status}")
    if r.wyoming_status != 0:
        reasons.append(f"Wyoming server exit {r.wyoming_status}")
    if r.tracebacks:
        reasons.append(f"{r.tracebacks} tracebacks in the logs")
    if r.scrape_failures:
        reasons.append(f"{len(r.scrape_failures)} /metrics scrapes failed")
    for name, key, tol in (("daemon RSS MB", "rss_mb", FLAT_RSS_MB), ("daemon threads", "threads", FLAT_THREADS),
                           ("daemon fds", "fds", FLAT_FDS), ("Wyoming RSS MB", "wy_rss_mb", FLAT_RSS_MB),
                           ("Wyoming threads", "wy_threads", FLAT_THREADS), ("Wyoming fds", "wy_fds", FLAT_FDS)):
        ok, first, last = flat([getattr(s, key) for s in warm(r)], tol)
        if not ok:
            reasons.append(f"{name} not flat: {first:g} -> {last:g} (allowed +{tol:g})")
    r.reasons, r.verdict = reasons, not reasons


# ----------------------------------------------------------------------------- report


def report(r: Result) -> str:
    out = []
    o = r.options
    out.append(f"# kws-stream soak: {o.minutes:g} min requested, {r.duration_s:.0f} s run, seed {o.seed}, "
               f"pauses {o.min_pause:g}-{o.max_pause:g} s")
    out.append("")
    out.append(f"## Samples (every {o.sample_every:g} s)")
    out.append(f"{'t_s':>6} {'rss_mb':>7} {'thr':>4} {'fds':>4} | "
               f"{'wy_rss':>7} {'wy_thr':>6} {'wy_fds':>6} | {'metrics_det':>11}")
    for s in r.samples:
        md = "-" if s.metrics_detections is None else f"{s.metrics_detections:g}"
        out.append(f"{s.t:6.0f} {s.rss_mb:7.1f} {s.threads:4d} {s.fds:4d} | {s.wy_rss_mb:7.1f} {s.wy_threads:6d} "
                   f"{s.wy_fds:6d} | {md:>11}")
    for name, key, tol in (("daemon RSS MB", "rss_mb", FLAT_RSS_MB), ("daemon threads", "threads", FLAT_THREADS),
                           ("daemon fds", "fds", FLAT_FDS), ("Wyoming RSS MB", "wy_rss_mb", FLAT_RSS_MB),
                           ("Wyoming threads", "wy_threads", FLAT_THREADS), ("Wyoming fds", "wy_fds", FLAT_FDS)):
        ok, first, last = flat([getattr(s, key) for s in warm(r)], tol)
        out.append(f"flat {name} (samples from {o.warmup_s:g} s): first-quarter median {first:g}, last-quarter median {last:g}, "
                   f"allowed +{tol:g}: {'yes' if ok else 'NO'}")
    out.append("")
    out.append("## Commands (stdout JSON lines and MQTT)")
    out.append(f"{'cmd':>4} {'clip':<19} {'word':<6} {'pause':>6} "
               f"{'kind':<13} {'stdout':>7} {'latency':>8} {'mqtt':>5}")
    for e in r.expected:
        lat = "-" if e.latency is None else f"{e.latency:+.2f}s"
        out.append(f"{e.command:4d} {e.clip:<19} {e.keyword:<6} {e.pause_s:6.2f} {e.pause_kind:<13} "
                   f"{'found' if e.stdout else 'MISSING':>7} {lat:>8} "
                   f"{'ok' if e.mqtt and e.hermes else ('-' if not e.stdout else 'MISS'):>5}")
    found = [e for e in r.expected if e.stdout]
    lats = sorted(e.latency for e in found if e.latency is not None)
    out.append(f"expected {len(r.expected)} words in {len({e.command for e in r.expected})} commands; "
               f"found on stdout {len(found)}; on MQTT {sum(e.mqtt and e.hermes for e in r.expected)}")
    if lats:
        p95 = lats[min(len(lats) - 1, int(0.95 * len(lats)))]
        out.append(f"read time minus end of the word's second: median {statistics.median(lats):+.2f} s, "
                   f"p95 {p95:+.2f} s, max {lats[-1]:+.2f} s")
    missing = [e for e in r.expected if e.stdout is None]
    out.append(f"missing on stdout: {len(missing)}" + "".join(
        f"\n  cmd {e.command} {e.clip} '{e.keyword}' after {e.pause_s} s {e.pause_kind}" for e in missing))
    out.append(f"extra on stdout: {len(r.extra_stdout)}" + "".join(
        f"\n  {json.dumps(d)}" for _, d in r.extra_stdout))
    out.append(f"extra on MQTT: {len(r.extra_mqtt)}"
               + "".join(f"\n  {t} {json.dumps(p)}" for t, p in r.extra_mqtt[:20]))
    out.append(f"MQTT QoS 1 redeliveries ignored: {r.mqtt_redelivered}")
    out.append("")
    out.append("## Wyoming client")
    right = sum(w.ok for w in r.wyoming)
    out.append(f"rounds {len(r.wyoming)} over {r.wyoming_connections} connections, right {right}")
    out.append(f"the model's own misses (wrong, but `detect` on the same audio says the same): "
               f"{sum(w.model_miss for w in r.wyoming)}")
    for w in r.wyoming:
        if not w.ok:
            out.append(f"  round {w.index} {w.clip} after {w.pause_s:.2f} s: "
                       f"expected {list(w.expected)} got {w.got} {w.error} (detect: {w.offline})")
    out.append("")
    out.append("## Faults")
    out.append(f"SIGHUPs sent {len(r.sighups)}: " + ", ".join(f"{t:.0f}s {w}" for t, w in r.sighups))
    out.append(f"reloads logged {r.reloads}, rejected {r.reload_rejected}")
    out.append(f"broker restarts {len(r.broker_restarts)} at " + ", ".join(f"{t:.0f}s" for t in r.broker_restarts)
               + f" ({o.broker_down:g} s down each)")
    out.append(f"microphone removed and re-added {len(r.mic_unplugs)} times at "
               + ", ".join(f"{t:.0f}s" for t in r.mic_unplugs) + f" ({o.mic_down:g} s away each)")
    out.append(f"CPU hog (nice 19 busy loop): {'on, ' + format(r.hog_cpu_s, 'g') + ' CPU s' if o.hog else 'off'}")
    out.append(f"/metrics scraper every {o.scrape_every:g} s: {r.scrapes} answers, {len(r.scrape_failures)} failures"
               + "".join(f"\n  {f}" for f in r.scrape_failures[:10]))
    out.append(f"vanishing Wyoming clients: {r.vanisher_connections} connections, errors {len(r.vanisher_errors)}"
               + "".join(f"\n  {e}" for e in r.vanisher_errors[:10]))
    out.append("daemon log events: " + ", ".join(f"{k}={v}" for k, v in sorted(r.daemon_events.items())))
    out.append("virtual microphone: " + ", ".join(f"{k}={v:g}" for k, v in sorted(r.mic.items()))
               + " (lateness over 1 s resyncs the feeder: a loaded machine, not the daemon)")
    out.append(f"daemon exit {r.daemon_status}, Wyoming server exit {r.wyoming_status}, tracebacks {r.tracebacks}")
    out.append("")
    out.append("VERDICT: PASS" if r.verdict else "VERDICT: FAIL: " + "; ".join(r.reasons))
    return "\n".join(out)


def to_json(r: Result) -> dict[str, Any]:
    d = asdict(r)
    d["options"]["workdir"] = str(r.options.workdir) if r.options.workdir else None
    return d


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-pause", type=float, default=1.0, help="shortest pause before a command, s (default 1)")
    p.add_argument("--max-pause", type=float, default=60.0, help="longest pause before a command, s (default 60)")
    p.add_argument("--sample-every", type=float, default=30.0, help="seconds between RSS/threads/fds samples")
    p.add_argument("--sighup-every", type=float, default=180.0, help="seconds between SIGHUPs (default 180)")
    p.add_argument("--broker-restarts", type=int, default=2)
    p.add_argument("--broker-down", type=float, default=5.0, help="seconds the broker stays down each time")
    p.add_argument("--wyoming-max-pause", type=float, default=20.0)
    p.add_argument("--clips", default=",".join(CLIPS),
                   help="comma-separated clips of keywords/ to play (default: all of them)")
    p.add_argument("--workdir", type=Path, help="keep logs here (default: a temporary directory, removed)")
    p.add_argument("--json", type=Path, help="also write the full result as JSON here")
    p.add_argument("--mic-unplugs", type=int, default=2, help="times the microphone is removed (pactl)")
    p.add_argument("--mic-down", type=float, default=5.0, help="seconds it stays removed each time")
    p.add_argument("--no-hog", action="store_true", help="no nice-19 CPU hog beside the daemon")
    p.add_argument("--scrape-every", type=float, default=2.0, help="seconds between /metrics scrapes (0: off)")
    p.add_argument("--no-vanishers", action="store_true", help="no Wyoming clients that come and go")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds of samples not judged for flatness")
    a = p.parse_args(argv)
    clips = tuple(c for c in a.clips.split(",") if c)
    unknown = [c for c in clips if c not in CLIPS]
    if unknown or not clips:
        print(f"soak: unknown clip {unknown[0] if unknown else '(none)'}: choose from {','.join(CLIPS)}",
              file=sys.stderr)
        return 2
    if a.minutes <= 0 or not 0 < a.min_pause <= a.max_pause or a.sample_every <= 0 or a.sighup_every <= 0:
        print("soak: --minutes, --sample-every, --sighup-every must be > 0 and 0 < --min-pause <= --max-pause",
              file=sys.stderr)
        return 2
    opts = Options(a.minutes, a.seed, a.min_pause, a.max_pause, a.sample_every, a.sighup_every,
                   a.broker_restarts, a.broker_down, a.wyoming_max_pause, clips, workdir=a.workdir,
                   mic_unplugs=a.mic_unplugs, mic_down=a.mic_down, hog=not a.no_hog,
                   scrape_every=a.scrape_every, vanishers=not a.no_vanishers, warmup_s=a.warmup)
    result = run_soak(opts, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(report(result), flush=True)
    if a.json:
        a.json.write_text(json.dumps(to_json(result), indent=1, default=str))
    return 0 if result.verdict else 1


if __name__ == "__main__":
    sys.exit(main())
