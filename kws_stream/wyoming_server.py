"""`kws-stream serve wyoming`: a Wyoming wake-word service (Home Assistant, Rhasspy 3).

The `wyoming` package does the framing (a JSON header line, JSON data, a PCM payload)
and the TCP/Unix listener; this module is the wake-word handler behind it:

- `describe` -> `info` with one wake program, `kws-stream`, whose models are the
  keywords this server reports: one `WakeModel` per keyword (`name` and `phrase` are
  the keyword, e.g. "stop"; `version` is the MicroNet model that spots it). Home
  Assistant lists wake words by model, so each keyword is a wake word a user can pick,
  and a `detection` names the keyword that fired.
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
answer `describe` and handle signals while a big chunk is processed.

Bad input from a client (unsupported width, a malformed event, a connection cut
mid-message) is one log line and closes that connection only. SIGTERM/SIGINT close
every connection and the listener and exit 0; SIGHUP is logged and ignored (no reload).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Iterable

import numpy as np

from . import __version__
from .decision import NON_KEYWORDS
from .errors import KwsError
from .events import Detection as KwsDetection
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
MODEL_ATTRIBUTION = Attribution(name="Arm ML-Zoo MicroNet (Apache-2.0), trained on Google Speech Commands",
                                url="https://github.com/ARM-software/ML-zoo")


class ClientError(Exception):
    """Bad input from one client: logged in one line, that connection is closed."""


@dataclass(frozen=True)
class AudioFormat:
    rate: int
    width: int
    channels: int

    @classmethod
    def from_data(cls, data: dict[str, Any], event_type: str) -> "AudioFormat":
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


class WakeService:
    """What all connections share: the model, the lock around it, the `info` answer."""

    def __init__(self, model: Any, model_name: str, params: PipelineParams,
                 keywords: Iterable[str] = ()) -> None:
        self.model = model
        self.model_name = model_name
        self.params = params
        allowed = set(keywords)
        self.keywords = tuple(k for k in model.labels
                              if k not in NON_KEYWORDS and (not allowed or k in allowed))
        self.lock = threading.Lock()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.info = Info(wake=[WakeProgram(
            name=PROGRAM,
            description=f"Keyword spotting with Arm MicroNet int8 ({model_name}): {', '.join(self.keywords)}",
            attribution=Attribution(name="kws-stream (Apache-2.0)", url=""),
            installed=True,
            version=__version__,
            models=[WakeModel(name=k, phrase=k, languages=["en"], attribution=MODEL_ATTRIBUTION,
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

    async def run(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.service.tasks.add(task)
        log.info("event=client_connected client=%s", self.client)
        try:
            await super().run()
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            log.info("event=client_lost client=%s reason=%r", self.client, type(exc).__name__)
        except Exception as exc:  # a malformed header (not an object, no type...): this client only
            log.warning("event=client_rejected client=%s reason=%r", self.client, f"bad event: {exc!r}")
        finally:
            if task is not None:
                self.service.tasks.discard(task)
            log.info("event=client_disconnected client=%s", self.client)

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
                            self.service.params)
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
        detections = await asyncio.to_thread(self._run_pipeline, stream, pcm[:whole], last, finish)
        for detection in detections:
            if self.names is not None and detection.keyword not in self.names:
                continue
            stream.detected = True
            timestamp = (stream.base_ms or 0) + round(detection.end * 1000)
            log.info("event=detection client=%s keyword=%s score=%.4f timestamp=%d",
                     self.client, detection.keyword, detection.score, timestamp)
            await self.write_event(Detection(name=detection.keyword, timestamp=timestamp).event())

    def _run_pipeline(self, stream: _Stream, pcm: bytes, last: bool, finish: bool) -> list[KwsDetection]:
        """Worker thread: decode and resample freely, feed the shared model under the lock."""
        samples = stream.converter.convert(stream.fmt.decode(pcm), last=last)
        with self.service.lock:
            detections = stream.pipeline.feed(samples) if len(samples) else []
            if finish:
                detections += stream.pipeline.finish()
        return detections


async def _serve(uri: str, service: WakeService, notifier: Any = None) -> int:
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
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: log.warning(
        "event=reload_ignored reason=%r", "the Wyoming service does not reload; restart it to apply changes"))
    log.info("event=listening uri=%s model=%s keywords=%s", uri, service.model_name, ",".join(service.keywords))
    if notifier is not None:
        notifier.ready(f"Wyoming wake service on {uri}")
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    log.info("event=stopping clients=%d", len(service.tasks))
    if notifier is not None:
        notifier.stopping()
    await server.stop()  # closes every connection and the listener
    if service.tasks:
        await asyncio.wait(set(service.tasks), timeout=STOP_TIMEOUT)
    log.info("event=stop")
    return 0


def serve(config: Any, model: Any, model_name: str, notifier: Any = None) -> int:
    """Run the Wyoming wake service until SIGTERM/SIGINT; returns the exit status (0)."""
    service = WakeService(model, model_name, config.pipeline_params(), config.detection.keywords)
    return asyncio.run(_serve(config.wyoming.uri, service, notifier))
