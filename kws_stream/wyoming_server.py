"""`kws-stream serve wyoming`: a Wyoming wake-word service (Home Assistant, Rhasspy 3).

The `wyoming` package does the framing (a JSON header line, JSON data, a PCM payload)
and the TCP/Unix listener; this module is the wake-word handler behind it:

- `describe` -> `info` with one wake program, `kws-stream`, whose models are the
  keywords this server reports: one `WakeModel` per keyword (`name` and `phrase` are
  the keyword, e.g. "stop"; `version` is the MicroNet model that spots it). Home
  Assistant lists wake words by model, so each keyword is a wake word a user can pick,
  and a `detection` names the keyword that fired. Each enrolled word (`kws-stream enroll`,
  loaded at start) is one more `WakeModel`, named by the word, `version` "enrolled".
- `detect {names?}` restricts what this connection is told about to those keywords
  (a name equal to the model name, e.g. "micronet-l", means all of them; unknown
  names are logged and ignored; no names or an empty list = every keyword).
- `audio-start`/`audio-chunk`/`audio-stop` at any rate (1-384 kHz), width (1 = unsigned
  8-bit as in WAV, 2, 3 = 24-bit, 4 = 32-bit signed, little-endian) and channel count
  (1-32, mixed down) become 16 kHz mono int16 through the same streaming
  `StreamConverter` as files and microphones, then one `Pipeline` per connection.
  A chunk whose format differs from the stream's switches converters mid-stream; a
  chunk without `audio-start` starts a stream; a frame split across chunks is joined.
- Each keyword the pipeline reports (and the client asked for) is sent at once as
  `detection {name, timestamp}`: `timestamp` is the audio position in milliseconds at
  the end of the 1 s window that fired, offset by the stream's first timestamp
  (`audio-start`'s, else the first chunk's, else 0), i.e. on the client's own clock.
- `audio-stop` flushes the resampler, calls `Pipeline.finish()`, sends any last
  detections, then `not-detected` if nothing was sent since `audio-start`.
- `ping` -> `pong`; other event types are ignored (Wyoming servers drop what they do
  not handle).

Concurrency: every connection has its own converter and `Pipeline` (stream state),
and all share one `KeywordModel`. The TFLite interpreter is not thread-safe, so
decoding and resampling run in a worker thread per chunk while `Pipeline.feed` (MFCC +
inference, ~0.3 ms per 20 ms hop) runs under one lock: one interpreter in memory
whatever the number of clients, and the event loop stays free to accept connections,
answer `describe` and handle signals while a big chunk is processed. Audio is fed in
turns of at most 0.5 s (`SLICE`), taken in arrival order, so a client sending a big chunk
cannot make the others wait for all of it.

Limits (a local client must not be able to take the machine down): an event's header line
is at most 64 KiB, its JSON data 64 KiB and its payload 1 MiB (32 s of 16 kHz 16-bit mono;
Home Assistant sends ~2 KiB chunks), refused before they are read; a client that sends no
complete event for `[wyoming] idle_timeout` seconds (60), or none at all within
FIRST_EVENT_TIMEOUT (5 s; Home Assistant sends `describe` at once), is disconnected; at most
`[wyoming] max_clients` (16) connections are open: a new one closes the connection that
never sent an event (oldest first), else the one idle longest, so that idle connections
cannot lock a real client out. Each is logged (`client_rejected`, `client_idle_timeout`,
`client_evicted`: one line a minute while it goes on).

Bad input from a client (unsupported width, a malformed event, a connection cut
mid-message) is one log line and closes that connection only. SIGTERM/SIGINT close
every connection and the listener and exit 0; SIGHUP is logged and ignored (no reload).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from . import __version__
from .decision import NON_KEYWORDS
from .errors import KwsError
from .events import Detection as KwsDetection
from .judge import load_judge
from .pipeline import Pipeline, PipelineParams
from .sources import StreamConverter

try:
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.event import Event
    from wyoming.info import Attribution, Describe, Info, WakeModel, WakeProgram
    from wyoming.ping import Ping, Pong
    from wyoming.server import AsyncEventHandler, AsyncServer
    from wyoming.wake import Detect, Detection, NotDetected
except ImportError:  # pragma: no cover - a packaging error
    raise KwsError("the Wyoming service needs the wyoming package: pip install 'wyoming>=1.10'") from None

log = logging.getLogger(__name__)

PROGRAM = "kws-stream"
SAMPLE_WIDTHS = (1, 2, 3, 4)  # bytes per sample
RATE_RANGE = (1000, 384000)
MAX_CHANNELS = 32
STOP_TIMEOUT = 5.0  # seconds to let connections close at shutdown
WORKER_THREADS = 2  # one client's turn at the shared model + another's format conversion
FIRST_EVENT_TIMEOUT = 5.0  # s for a new connection's first complete event (capped by idle_timeout)
EVICTION_LOG_INTERVAL = 60.0  # s between log lines while connections are being evicted
MAX_HEADER = 1 << 16  # bytes in an event's JSON header line (asyncio's StreamReader limit)
MAX_DATA = 1 << 16  # bytes of an event's JSON data
MAX_PAYLOAD = 1 << 20  # bytes of an event's payload: 32 s of 16 kHz 16-bit mono audio
SLICE = 8000  # 16 kHz samples (0.5 s) fed to the shared model per turn: a big chunk cannot hold it
MODEL_ATTRIBUTION = Attribution(name="Arm ML-Zoo MicroNet (Apache-2.0), trained on Google Speech Commands",
                                url="https://github.com/ARM-software/ML-zoo")
ENROLLED_ATTRIBUTION = Attribution(name="enrolled on this machine (kws-stream enroll)", url="")


class ClientError(Exception):
    """Bad input from one client: logged in one line, that connection is closed."""


@dataclass(frozen=True)
class AudioFormat:
    rate: int
    width: int
    channels: int

    @classmethod
    def from_data(cls, data: dict[str, Any], event_type: str) -> AudioFormat:
        values = {}
        for key in ("rate", "width", "channels"):
            value = data.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ClientError(f"{event_type} without a valid {key} (got {value!r})")
            values[key] = value
        fmt = cls(**values)
        if fmt.width not in SAMPLE_WIDTHS:
            raise ClientError(f"{event_type} with unsupported width {fmt.width} (bytes per sample: 1, 2, 3 or 4)")
        if not RATE_RANGE[0] <= fmt.rate <= RATE_RANGE[1]:
            raise ClientError(f"{event_type} with unsupported rate {fmt.rate} "
                              f"(allowed: {RATE_RANGE[0]}-{RATE_RANGE[1]} Hz)")
        if not 1 <= fmt.channels <= MAX_CHANNELS:
            raise ClientError(f"{event_type} with unsupported channels {fmt.channels} (allowed: 1-{MAX_CHANNELS})")
        return fmt

    @property
    def frame_bytes(self) -> int:
        return self.width * self.channels

    def decode(self, pcm: bytes) -> np.ndarray:
        """Whole frames of little-endian PCM -> (frames[, channels]) samples for StreamConverter."""
        if self.width == 1:
            samples = np.frombuffer(pcm, dtype=np.uint8)  # unsigned, as 8-bit WAV stores it
        elif self.width == 2:
            samples = np.frombuffer(pcm, dtype="<i2").astype(np.int16, copy=False)
        elif self.width == 4:
            samples = np.frombuffer(pcm, dtype="<i4").astype(np.int32, copy=False)
        else:  # 24-bit: put each sample in the top three bytes of an int32
            padded = np.zeros((len(pcm) // 3, 4), dtype=np.uint8)
            padded[:, 1:] = np.frombuffer(pcm, dtype=np.uint8).reshape(-1, 3)
            samples = padded.reshape(-1).view("<i4").astype(np.int32, copy=False)
        return samples.reshape(-1, self.channels) if self.channels > 1 else samples


class Clients:
    """The open connections, least recently active first: who makes room for a newcomer.

    A full server closes a connection to admit a new one, never the newcomer: first one that
    has not sent a complete event yet (the oldest), else the one idle longest. A client that is
    being served sends an event at least every few hundred ms; Home Assistant's first event
    comes at once. So neither a flood of idle connections nor a few forgotten ones lock it out.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._order: dict[WakeHandler, None] = {}  # insertion order = least recently active first
        self.evicted = 0
        self._eviction_logged = -EVICTION_LOG_INTERVAL

    def __len__(self) -> int:
        return len(self._order)

    def admit(self, handler: WakeHandler) -> None:
        """Register a new connection, closing one first when the server is full."""
        while len(self._order) >= self.limit:
            victim = next((h for h in self._order if not h.spoke), None) or next(iter(self._order))
            self.remove(victim)
            victim.evict()
            self.evicted += 1
            now = time.monotonic()
            if now - self._eviction_logged >= EVICTION_LOG_INTERVAL:  # a flood is one line a minute
                self._eviction_logged = now
                log.warning("event=client_evicted client=%s spoke=%s max_clients=%d evicted_total=%d "
                            "note=closed_to_admit_a_new_connection", victim.client, victim.spoke,
                            self.limit, self.evicted)
        self._order[handler] = None

    def touch(self, handler: WakeHandler) -> None:
        """`handler` just sent an event: it is now the most recently active."""
        if handler in self._order:  # not if it was just evicted
            del self._order[handler]
            self._order[handler] = None

    def remove(self, handler: WakeHandler) -> None:
        self._order.pop(handler, None)


class WakeService:
    """What all connections share: the model, the lock around it, the `info` answer."""

    def __init__(self, model: Any, model_name: str, params: PipelineParams,
                 keywords: Iterable[str] = (), idle_timeout: float = 60.0, max_clients: int = 16,
                 first_event_timeout: float = FIRST_EVENT_TIMEOUT) -> None:
        self.model = model
        self.model_name = model_name
        self.params = params
        self.judge = load_judge() if params.command.enabled else None  # shared, locked
        self.idle_timeout = idle_timeout
        self.first_event_timeout = min(first_event_timeout, idle_timeout)
        self.clients = Clients(max_clients)
        allowed = set(keywords)
        self.keywords = tuple(k for k in (*model.labels, *params.words.names)  # enrolled words too
                              if k not in NON_KEYWORDS and (not allowed or k in allowed))
        enrolled = set(params.words.names)
        # Turns at the model are taken in arrival order (asyncio.Lock is FIFO); the thread lock
        # also keeps the interpreter exclusive if a turn's task is cancelled mid-inference.
        self.turn = asyncio.Lock()
        self.lock = threading.Lock()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.info = Info(wake=[WakeProgram(
            name=PROGRAM,
            description=f"Keyword spotting with Arm MicroNet int8 ({model_name}): {', '.join(self.keywords)}",
            attribution=Attribution(name="kws-stream (Apache-2.0)", url=""),
            installed=True,
            version=__version__,
            models=[WakeModel(name=k, phrase=k.replace("_", " "), languages=["en"], attribution=ENROLLED_ATTRIBUTION,
                              installed=True, description=f"the word \"{k}\" you enrolled (kws-stream enroll)",
                              version="enrolled")
                    if k in enrolled else
                    WakeModel(name=k, phrase=k, languages=["en"], attribution=MODEL_ATTRIBUTION,
                              installed=True, description=f"the keyword \"{k}\" ({model_name})",
                              version=model_name)
                    for k in self.keywords],
        )])

    def names_filter(self, names: Any, client: str) -> frozenset[str] | None:
        """`detect`'s names -> the keywords to report (None = all)."""
        if names is None:
            return None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ClientError(f"detect with invalid names {names!r} (expected a list of strings)")
        if not names or self.model_name in names:
            return None
        unknown = sorted(set(names) - set(self.keywords))
        if unknown:
            log.warning("event=unknown_wake_names client=%s names=%s known=%s",
                        client, ",".join(unknown), ",".join(self.keywords))
        return frozenset(names) & frozenset(self.keywords)


@dataclass
class _Stream:
    """One audio stream (audio-start to audio-stop) of one connection."""

    fmt: AudioFormat
    converter: StreamConverter
    pipeline: Pipeline
    base_ms: int | None
    detected: bool = False
    pending: bytes = field(default=b"")  # a partial frame carried to the next chunk


class WakeHandler(AsyncEventHandler):
    """One client connection: its own stream state and keyword filter."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, service: WakeService) -> None:
        super().__init__(reader, writer)
        self.service = service
        peer = writer.get_extra_info("peername")
        self.client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "unix"
        self.names: frozenset[str] | None = None
        self.stream: _Stream | None = None
        self.spoke = False  # a complete event has arrived

    async def run(self) -> None:
        """Read events until the client leaves, sends something bad, idles, is evicted to
        make room, or the server stops."""
        self.service.clients.admit(self)
        task = asyncio.current_task()
        if task is not None:
            self.service.tasks.add(task)
        log.debug("event=client_connected client=%s", self.client)
        self._is_running = True
        try:
            while self._is_running:
                timeout = self.service.idle_timeout if self.spoke else self.service.first_event_timeout
                try:
                    event = await asyncio.wait_for(read_event(self.reader), timeout)
                except TimeoutError:
                    log.info("event=client_idle_timeout client=%s idle_s=%g first_event=%s",
                             self.client, timeout, not self.spoke)
                    break
                if event is None or not self._is_running:
                    break
                self.spoke = True
                self.service.clients.touch(self)
                if not await self.handle_event(event):
                    break
        except ClientError as exc:
            log.warning("event=client_rejected client=%s reason=%r", self.client, str(exc))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            log.info("event=client_lost client=%s reason=%r", self.client, type(exc).__name__)
        except Exception as exc:  # a bug must cost one connection, never the server
            log.warning("event=client_rejected client=%s reason=%r", self.client, f"bad event: {exc!r}")
        finally:
            self.writer.close()
            self.service.clients.remove(self)
            if task is not None:
                self.service.tasks.discard(task)
            self.stream = None  # cut off mid-stream, maybe: freed now (a Pipeline holds no reference cycle)
            # a connection that never sent an event is a debug line: a flood must not flood the log
            log.log(logging.INFO if self.spoke else logging.DEBUG, "event=client_disconnected client=%s", self.client)

    def evict(self) -> None:
        """Close this connection to make room for a new one (its reader sees the end of the stream)."""
        self._is_running = False
        self.writer.close()
        self.reader.feed_eof()

    async def handle_event(self, event: Event) -> bool:
        try:
            await self._handle(event)
            return True
        except ClientError as exc:
            log.warning("event=client_rejected client=%s reason=%r", self.client, str(exc))
        except ConnectionError as exc:
            log.info("event=client_lost client=%s reason=%r", self.client, type(exc).__name__)
        except Exception as exc:  # a bug must cost one connection, never the server
            log.error("event=client_error client=%s type=%s error=%r", self.client, event.type, exc)
        return False

    async def _handle(self, event: Event) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        if AudioChunk.is_type(event.type):
            await self._chunk(AudioFormat.from_data(data, event.type), event.payload or b"", data.get("timestamp"))
        elif AudioStart.is_type(event.type):
            self._start(AudioFormat.from_data(data, event.type), data.get("timestamp"))
        elif AudioStop.is_type(event.type):
            await self._stop()
        elif Detect.is_type(event.type):
            self.names = self.service.names_filter(data.get("names"), self.client)
            log.debug("event=detect client=%s names=%s", self.client, ",".join(sorted(self.names or ())) or "all")
        elif Describe.is_type(event.type):
            await self.write_event(self.service.info.event())
        elif Ping.is_type(event.type):
            await self.write_event(Pong(text=data.get("text")).event())
        else:
            log.debug("event=ignored client=%s type=%s", self.client, event.type)

    def _start(self, fmt: AudioFormat, timestamp: Any) -> None:
        base = timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else None
        pipeline = Pipeline(self.service.model, self.service.model_name, f"wyoming:{self.client}",
                            self.service.params, judge=self.service.judge)
        self.stream = _Stream(fmt, StreamConverter(fmt.rate, fmt.channels), pipeline, base)
        log.debug("event=audio_start client=%s rate=%d width=%d channels=%d",
                  self.client, fmt.rate, fmt.width, fmt.channels)

    async def _chunk(self, fmt: AudioFormat, pcm: bytes, timestamp: Any) -> None:
        stream = self.stream
        if stream is None:  # no audio-start: the first chunk starts the stream
            self._start(fmt, timestamp)
            stream = self.stream
            assert stream is not None
        elif fmt != stream.fmt:  # the format changed mid-stream: flush the old converter
            await self._process(stream, b"", last=True, keep_pending=False)
            log.info("event=audio_format_changed client=%s rate=%d width=%d channels=%d",
                     self.client, fmt.rate, fmt.width, fmt.channels)
            stream.fmt, stream.converter = fmt, StreamConverter(fmt.rate, fmt.channels)
        if stream.base_ms is None:
            stream.base_ms = timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else 0
        await self._process(stream, pcm, last=False)

    async def _stop(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            await self._process(stream, b"", last=True, finish=True)
        if stream is None or not stream.detected:
            await self.write_event(NotDetected().event())
        log.debug("event=audio_stop client=%s", self.client)

    async def _process(self, stream: _Stream, pcm: bytes, last: bool, finish: bool = False,
                       keep_pending: bool = True) -> None:
        pcm = stream.pending + pcm
        whole = len(pcm) - len(pcm) % stream.fmt.frame_bytes
        stream.pending = pcm[whole:] if keep_pending else b""
        samples = await asyncio.to_thread(self._convert, stream, pcm[:whole], last)  # no lock needed
        for start in range(0, len(samples), SLICE):
            await self._send(stream, await self._feed(stream.pipeline.feed, samples[start:start + SLICE]))
        if finish:
            await self._send(stream, await self._feed(stream.pipeline.finish))

    async def _feed(self, step: Any, *args: Any) -> list[KwsDetection]:
        """One turn at the shared model, in a worker thread (the event loop keeps serving)."""
        async with self.service.turn:
            return await asyncio.to_thread(self._locked, step, *args)

    def _locked(self, step: Any, *args: Any) -> list[KwsDetection]:
        with self.service.lock:
            return list(step(*args))

    @staticmethod
    def _convert(stream: _Stream, pcm: bytes, last: bool) -> np.ndarray:
        return stream.converter.convert(stream.fmt.decode(pcm), last=last)

    async def _send(self, stream: _Stream, detections: list[KwsDetection]) -> None:
        for detection in detections:
            if self.names is not None and detection.keyword not in self.names:
                continue
            stream.detected = True
            timestamp = (stream.base_ms or 0) + round(detection.end * 1000)
            log.info("event=detection client=%s keyword=%s score=%.4f timestamp=%d",
                     self.client, detection.keyword, detection.score, timestamp)
            await self.write_event(Detection(name=detection.keyword, timestamp=timestamp).event())


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """One Wyoming event (what `wyoming.event.async_read_event` reads), refusing a header,
    data or payload over the limits before reading it; None at the end of the stream."""
    try:
        line = await reader.readline()
    except ValueError:  # asyncio's LimitOverrunError: no newline within the reader's limit
        raise ClientError(f"header line over the limit of {MAX_HEADER} bytes") from None
    if not line.endswith(b"\n"):
        return None  # the end of the stream (or a line cut by it)
    try:
        header = json.loads(line)
    except ValueError:
        raise ClientError("event header is not JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise ClientError("event header is not an object with a type")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise ClientError("event data is not an object")
    data_length = _length(header, "data_length", MAX_DATA)
    payload_length = _length(header, "payload_length", MAX_PAYLOAD)
    if data_length:
        try:
            extra = json.loads(await reader.readexactly(data_length))
        except ValueError:
            raise ClientError("event data is not JSON") from None
        if not isinstance(extra, dict):
            raise ClientError("event data is not an object")
        data.update(extra)
    payload = await reader.readexactly(payload_length) if payload_length else None
    return Event(type=header["type"], data=data, payload=payload)


def _length(header: dict[str, Any], key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ClientError(f"{key} {value!r} is not a byte count")
    if value > limit:
        raise ClientError(f"{key} {value} is over the limit of {limit} bytes")
    return value


def _started_pool(size: int) -> ThreadPoolExecutor:
    """A pool whose `size` threads all exist from the start (asyncio.run joins it at exit).

    asyncio's default pool grows with the clients seen, and a pool makes its threads lazily, so
    either way the thread count of a long-running service would depend on its history.
    """
    pool = ThreadPoolExecutor(size, thread_name_prefix="kws-wyoming")
    all_started = threading.Barrier(size)
    for _ in range(size):  # each task holds its thread until all are running: `size` threads
        pool.submit(all_started.wait)
    return pool


async def _serve(uri: str, service: WakeService, notifier: Any = None, early: Any = None) -> int:
    """`early`: the `service.Signals` installed before the model loaded; what they caught
    while starting is applied here, once the loop's own handlers are in place."""
    try:
        server = AsyncServer.from_uri(uri)
    except ValueError as exc:
        raise KwsError(f"bad Wyoming URI {uri!r}: {exc}") from None
    try:
        await server.start(partial(WakeHandler, service=service))
    except OSError as exc:
        raise KwsError(f"cannot listen on {uri}: {exc.strerror or exc}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_default_executor(_started_pool(WORKER_THREADS))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    def reload_ignored() -> None:
        log.warning("event=reload_ignored reason=%r", "the Wyoming service does not reload; restart it to apply changes")

    loop.add_signal_handler(signal.SIGHUP, reload_ignored)
    if early is not None:
        if early.reload.is_set():
            reload_ignored()
        if early.stop.is_set():  # a stop requested between the model load and now
            stop.set()
    log.info("event=listening uri=%s model=%s keywords=%s", uri, service.model_name, ",".join(service.keywords))
    if notifier is not None:
        notifier.ready(f"Wyoming wake service on {uri}")
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # not SIG_DFL: a late SIGHUP must not kill the exit
    log.info("event=stopping clients=%d", len(service.tasks))
    if notifier is not None:
        notifier.stopping()
    await server.stop()  # closes every connection and the listener
    if service.tasks:
        await asyncio.wait(set(service.tasks), timeout=STOP_TIMEOUT)
    log.info("event=stop")
    return 0


def serve(config: Any, model: Any, model_name: str, notifier: Any = None, early: Any = None,
          params: PipelineParams | None = None) -> int:
    """Run the Wyoming wake service until SIGTERM/SIGINT; returns the exit status (0).
    `params`: the config's pipeline parameters with the enrolled words (loaded at start only)."""
    service = WakeService(model, model_name, params or config.pipeline_params(), config.detection.keywords,
                          config.wyoming.idle_timeout, config.wyoming.max_clients)
    return asyncio.run(_serve(config.wyoming.uri, service, notifier, early))
