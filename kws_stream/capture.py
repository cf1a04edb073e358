"""Microphone capture: a sounddevice InputStream whose callback only copies.

The device is opened at 16 kHz when it can do that, else at its native rate (the
common 44.1/48 kHz USB microphones), with one channel when possible; conversion to
16 kHz mono happens later, in the worker, with a stateful resampler. PortAudio is
re-initialised before each reopen so a replugged device is found again.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import KwsError
from .features import SAMPLE_RATE
from .ringbuffer import RingBuffer
from .sources import StreamConverter

log = logging.getLogger(__name__)

RING_SECONDS = 4.0  # audio the worker may fall behind before the oldest is dropped
# Audio older than this when the worker reads it is dropped too: a starved process's
# callback thread starves with it, and the backlog then waits upstream (PulseAudio holds
# minutes) instead of overflowing the ring. The margin covers the worker's own slices.
STALE_AFTER_S = RING_SECONDS + 0.5
# s per s the capture clock's anchor may move later: a device clock up to 1 % slower than
# its nominal rate is followed. Were it slower than that, the clock would fall behind, audio
# would look older than it is and STALE_AFTER_S would drop it all; after a freeze of t s, the
# first late callback moves the anchor by t * CLOCK_RELAX (0.1 s for 10 s).
CLOCK_RELAX = 0.01


class DeviceError(KwsError):
    """No usable input device (yet): the daemon keeps retrying."""


def portaudio() -> Any:
    """The sounddevice module. PortAudio lists the devices when it is first imported, which
    loads every ALSA plugin for a moment (`release_alsa_plugins`): the daemon imports it
    before the model, so that this moment is not its peak memory."""
    first = "sounddevice" not in sys.modules
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises OSError when libportaudio is not installed
        raise KwsError(f"cannot load PortAudio ({exc}): install it (`sudo apt install libportaudio2`; "
                       "./setup.sh does)") from None
    if first:
        release_alsa_plugins()
    return sounddevice


def release_alsa_plugins() -> None:
    """Unload the ALSA plugin modules that PortAudio's device enumeration opened.

    PortAudio lists devices by opening every PCM the ALSA configuration defines, and
    alsa-lib keeps each plugin module loaded until PortAudio terminates. With
    libasound2-plugins that includes `a52`, an AC-3 encoder whose libavcodec maps 75
    more libraries (13 MB resident) into a process that only captures. Freeing ALSA's
    global configuration also drops its unused plugin modules; the stream opened
    afterwards reads the configuration again and loads only the plugin it uses.
    Call only while no stream is open (after import or a re-initialisation)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libasound = ctypes.CDLL("libasound.so.2")  # PortAudio's own copy: nothing new is mapped
        libasound.snd_config_update_free_global()
    except (OSError, AttributeError) as exc:  # a PortAudio without ALSA: nothing to release
        log.debug("event=alsa_release_skipped error=%r", exc)


def list_input_devices() -> list[dict[str, Any]]:
    """Input devices with index, name, host API, channels, default rate and default mark."""
    sd = portaudio()
    default = sd.default.device[0]
    apis = sd.query_hostapis()
    devices = []
    for info in sd.query_devices():
        if info["max_input_channels"] > 0:
            devices.append({
                "index": info["index"], "name": info["name"], "hostapi": apis[info["hostapi"]]["name"],
                "channels": info["max_input_channels"], "default_rate": info["default_samplerate"],
                "default": info["index"] == default,
            })
    return devices


def find_device(spec: str) -> int | None:
    """"" = the default input; digits = an index; else the first input whose name contains it."""
    sd = portaudio()
    if not spec:
        if not any(d["max_input_channels"] > 0 for d in sd.query_devices()):
            raise DeviceError("no input device found")
        return None
    if spec.isdigit():
        index = int(spec)
        try:
            info = sd.query_devices(index)
        except (ValueError, sd.PortAudioError):
            raise DeviceError(f"no device with index {index}") from None
        if info["max_input_channels"] < 1:
            raise DeviceError(f"device {index} ({info['name']}) has no input channels")
        return index
    for info in sd.query_devices():
        if info["max_input_channels"] > 0 and spec.lower() in info["name"].lower():
            return int(info["index"])
    raise DeviceError(f"no input device named like {spec!r}: see `kws-stream devices`")


def choose_format(device: int | None, rate: int, channels: int, channel: int | None) -> tuple[int, int]:
    """The first (rate, channels) the device accepts: 16 kHz mono preferred."""
    sd = portaudio()
    info = sd.query_devices(device, "input")
    rates = [rate] if rate else list(dict.fromkeys([SAMPLE_RATE, int(info["default_samplerate"])]))
    needed = 1 if channel is None else channel + 1
    counts = [channels] if channels else list(dict.fromkeys([needed, max(needed, 2)]))
    for r in rates:
        for c in counts:
            try:
                sd.check_input_settings(device=device, samplerate=r, channels=c, dtype="int16")
                return r, c
            except (ValueError, sd.PortAudioError):
                continue
    raise DeviceError(f"input device {info['name']!r} accepts none of rates {rates} x channels {counts}")


@dataclass
class CaptureSession:
    """One open input stream and the ring its callback fills."""

    device_name: str
    rate: int
    channels: int
    ring: RingBuffer
    converter: StreamConverter
    stream: Any = None
    last_callback: float = field(default_factory=time.monotonic)
    input_overflows: int = 0  # PortAudio's own overflow flags
    anchor: float = float("inf")  # monotonic time frame 0 was captured (see `callback`)

    def callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        self.ring.write(indata)
        now = time.monotonic()
        # Frame n was captured at anchor + n / rate. Each block arrives at or after the moment
        # its last frame was captured, so the earliest estimate is the truest: a callback that
        # comes late (a starved process) moves it by at most CLOCK_RELAX per second.
        # Monotonic, not wall-clock: a Pi without a real-time clock steps its wall clock
        # forward when NTP first answers, and this anchor only moves later slowly.
        estimate = now - self.ring.frames_written / self.rate
        relaxed = self.anchor + (now - self.last_callback) * CLOCK_RELAX
        if status.input_overflow:  # frames lost before they reached us: the count restarts
            self.input_overflows += 1
            relaxed = estimate
        self.anchor = min(estimate, relaxed)
        self.last_callback = now

    def captured_at(self, frame: float) -> float:
        """Monotonic time at which frame `frame` of this session was captured."""
        return self.anchor + frame / self.rate

    def wall_time(self, frame: float) -> float:
        """Wall-clock time (epoch s) at which frame `frame` of this session was captured,
        on the wall clock as it reads now."""
        return time.time() - (time.monotonic() - self.captured_at(frame))

    def stale_frames(self, first_frame: int, frames: int) -> int:
        """How many of `frames` frames from `first_frame` on are older than STALE_AFTER_S."""
        if not math.isfinite(self.anchor):  # no callback yet: no capture clock to judge by
            return 0
        age = time.monotonic() - self.captured_at(first_frame)
        return min(frames, max(0, math.ceil((age - STALE_AFTER_S) * self.rate)))

    def alive(self, timeout: float) -> bool:
        """Audio arrived within `timeout` s (an unplugged device just stops calling back)."""
        return self.stream is not None and self.stream.active and time.monotonic() - self.last_callback < timeout

    def close(self) -> None:
        if self.stream is not None:
            try:
                self.stream.abort(ignore_errors=True)
                self.stream.close(ignore_errors=True)
            except Exception as exc:  # a vanished device may fail here too
                log.debug("event=stream_close_error error=%r", exc)
            self.stream = None
        self.ring.wake()


def open_capture(device_spec: str, rate: int, channels: int, channel: int | None,
                 block_ms: int, reinitialise: bool) -> CaptureSession:
    """Open the input stream; raises DeviceError when no usable device is there."""
    sd = portaudio()
    if reinitialise:  # see devices plugged in since the last enumeration
        sd._terminate()
        sd._initialize()
        release_alsa_plugins()
    try:
        device = find_device(device_spec)
        rate, channels = choose_format(device, rate, channels, channel)
        name = sd.query_devices(device, "input")["name"]
        session = CaptureSession(
            device_name=name, rate=rate, channels=channels,
            ring=RingBuffer(int(RING_SECONDS * rate), channels),
            converter=StreamConverter(rate, channels, channel),
        )
        session.stream = sd.InputStream(device=device, samplerate=rate, channels=channels, dtype="int16",
                                        blocksize=max(1, rate * block_ms // 1000), callback=session.callback)
        session.stream.start()
    except sd.PortAudioError as exc:
        raise DeviceError(f"cannot open input device: {exc}") from None
    return session
