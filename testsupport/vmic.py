"""A real microphone without hardware, for end-to-end tests.

``VirtualMic`` runs a private PulseAudio daemon whose default source is a
``module-pipe-source`` fed from a FIFO by a real-time-paced feeder thread.
Any PortAudio/ALSA client started with ``mic.env`` (``sounddevice`` included)
records from it, bit-exactly, like from a USB microphone::

    with VirtualMic(tmp_path, rate=MICRONET.sample_rate, channels=1) as mic:
        proc = subprocess.Popen([...], env=mic.env)   # the program under test
        ...                                             # wait until it records
        done = mic.play(samples_int16)
        t_end = done.wait(5)      # monotonic time the last sample was written

Feeder policy (what the thread writes every 20 ms tick):

* Ticks follow a deadline schedule on ``time.monotonic()`` (tick k is due at
  ``t0 + k * block``), so the rate does not drift with sleep overshoot.  If
  the thread falls behind (loaded machine) it writes the missed blocks back
  to back, as a real driver would hand over its buffered audio.  Only after
  more than ``MAX_CATCHUP_S`` behind (process stopped, debugger) is the
  schedule reset to "now" and the missed time skipped.
* A block is queued clip audio (``play()``, in order, several clips may
  share a block) padded with silence, or pure silence when nothing is queued.
* PulseAudio does not read the FIFO while no client records, so the pipe
  would fill up (~2 s at 16 kHz) and that stale audio would reach the next
  client in a burst.  Worse, what sits in the pipe when a client connects is
  discarded (measured: ~100 ms of clip written into an unread pipe never
  reached the next recorder).  Before each write the feeder measures the
  bytes already waiting (``FIONREAD``, which works on Linux FIFOs) and:
    - at ``max_queued_s`` (100 ms) or more, writes nothing this tick: a
      pure-silence block is dropped (the clock keeps going); clip audio is
      never dropped, it is just not consumed and waits;
    - begins a clip (its first sample, unless it directly follows another
      clip in the same block) only when the reader was seen draining since
      the previous tick (queued bytes < previous queued + bytes written).
      Otherwise the block is silence and the clip waits.  Once begun, a clip
      continues contiguously (no silence inserted), limited only by the cap.
  So a clip played while nobody records is held back and delivered whole
  once a client starts reading; ``play()`` before the program under test
  opens its stream is allowed (if a client stops reading mid-clip, up to
  ~100 ms of that clip can be lost, like audio spoken into a closed device).
  For latency measurements play only after the program records.
* While the source is unplugged (no FIFO, or no reader), the clock keeps
  running, silence is discarded and queued clips wait; the FIFO is reopened
  when it reappears (``replug()``).  A stale FIFO (unlinked or replaced:
  detected by comparing inode numbers every tick) is closed and reopened,
  because the orphaned pipe would otherwise look permanently full.
* The FIFO is opened ``O_WRONLY | O_NONBLOCK``: opening fails with ENXIO
  while no reader exists, writes fail with EPIPE when the reader is gone and
  with EAGAIN when the pipe is full, so the feeder never blocks.  Writes are
  split into frame-aligned chunks of at most ``PIPE_BUF`` bytes, which POSIX
  makes atomic on pipes: a chunk is written whole or not at all, so the
  sample stream never loses frame alignment.  A clip chunk that could not be
  written is retried on the next tick; silence is dropped.
* The handle of a clip records ``time.monotonic()`` right after the write
  that contained its last sample returned, i.e. when that audio became
  available to PulseAudio.  The block may continue with up to 20 ms of
  silence after it.

Resources: the daemon runs with ``HOME``/``XDG_RUNTIME_DIR``/
``PULSE_RUNTIME_PATH`` set to a private runtime dir (``<tmpdir>/pulse``, or a
short ``/tmp/vmic-*`` dir when the socket path would exceed ``sun_path``), is
ended by its own PID in ``stop()`` (also at garbage collection / interpreter
exit as a last resort), and its log is ``<tmpdir>/pulseaudio.log``.
"""
from __future__ import annotations

import array
import collections
import errno
import fcntl
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import termios
import threading
import time
import weakref
from pathlib import Path

import numpy as np

from kws_stream.features import MICRONET

__all__ = ["VirtualMic", "PlayHandle", "VirtualMicError"]

BLOCK_S = 0.020
DRAINING_TICKS_TO_START = 2  # a clip begins once the reader drained the pipe this many ticks running
MAX_CATCHUP_S = 1.0
PIPE_BUF = 4096  # Linux; atomic-write limit for pipes
SOURCE_NAME = "vmic"


class VirtualMicError(RuntimeError):
    pass


class PlayHandle:
    """Completion handle of one ``play()`` call."""

    def __init__(self, frames: int):
        self.frames = frames
        self.queued_at = time.monotonic()
        self.started_at: float | None = None  # first sample written
        self.written_at: float | None = None  # last sample written
        self._event = threading.Event()

    def _set(self, t: float) -> None:
        self.written_at = t
        self._event.set()

    def done(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> float | None:
        """Block until the last sample was written to the FIFO.

        Returns its ``time.monotonic()`` timestamp, or None on timeout.
        """
        if self._event.wait(timeout):
            return self.written_at
        return None

    def __repr__(self) -> str:
        return f"<PlayHandle frames={self.frames} written_at={self.written_at}>"


def _terminate(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """End one process by its own PID (SIGTERM, then SIGKILL) and reap it."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
    except ProcessLookupError:
        pass


class VirtualMic:
    """Private PulseAudio server with a FIFO-fed default source ``vmic``."""

    def __init__(self, tmpdir, rate: int = MICRONET.sample_rate, channels: int = 1,
                 max_queued_s: float = 0.100, startup_timeout: float = 15.0):
        self.tmpdir = Path(tmpdir)
        self.pa_file = self.tmpdir / "vmic.pa"
        self.log_path = self.tmpdir / "pulseaudio.log"
        self.source_name = SOURCE_NAME
        self.rate = int(rate)
        self.channels = int(channels)
        self.max_queued_s = float(max_queued_s)
        self.startup_timeout = float(startup_timeout)
        self.block_frames = max(1, round(self.rate * BLOCK_S))
        self.frame_bytes = 2 * self.channels
        self._max_queued_bytes = int(self.rate * self.max_queued_s) * self.frame_bytes
        chunk_frames = max(1, PIPE_BUF // self.frame_bytes)
        self._chunk_bytes = chunk_frames * self.frame_bytes

        self._rt_created: str | None = None
        self.runtime_dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._finalizer = None
        self._module_index: int | None = None

        # feeder state
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._clips: collections.deque = collections.deque()  # [array, pos, handle]
        self._carry: list = []  # pending clip chunks: (bytes, [handles], [first_handles])
        self._fd: int | None = None
        self._fd_ino: tuple | None = None
        self._fed_ino: tuple | None = None  # FIFO identity of the last good write
        self._expect_idle: int | None = None  # queued bytes now if nobody read
        self._draining_ticks = 0  # consecutive ticks the reader was seen draining
        self.feeder_error: BaseException | None = None
        self.stats = collections.Counter()
        self.max_late_s = 0.0

    # ------------------------------------------------------------------ paths
    @property
    def fifo_path(self) -> Path:
        return self.runtime_dir / "mic.fifo"

    @property
    def socket_path(self) -> Path:
        return self.runtime_dir / "native"

    @property
    def module_args(self) -> str:
        return (f"source_name={SOURCE_NAME} file={self.fifo_path} format=s16le "
                f"rate={self.rate} channels={self.channels}")

    @property
    def env(self) -> dict:
        """``os.environ`` plus what a client needs to use this server."""
        if self.runtime_dir is None:
            raise VirtualMicError("VirtualMic not started")
        env = dict(os.environ)
        rt = str(self.runtime_dir)
        env.update(HOME=rt, XDG_RUNTIME_DIR=rt, PULSE_RUNTIME_PATH=rt,
                   PULSE_SERVER=f"unix:{self.socket_path}",
                   PULSE_CLIENTCONFIG=str(self.runtime_dir / "client.conf"))
        return env

    # -------------------------------------------------------------- lifecycle
    def __enter__(self) -> VirtualMic:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()
        if exc_type is None:
            self.check()

    def start(self) -> VirtualMic:
        if self.proc is not None:
            raise VirtualMicError("already started")
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        rt = self.tmpdir / "pulse"
        if len(str(rt / "native")) > 100:  # sun_path is 108 bytes
            self._rt_created = tempfile.mkdtemp(prefix="vmic-")
            rt = Path(self._rt_created)
        rt.mkdir(mode=0o700, exist_ok=True)
        self.runtime_dir = rt
        (rt / "client.conf").write_text("autospawn = no\n")
        if self.fifo_path.exists() or self.fifo_path.is_symlink():
            self.fifo_path.unlink()  # PulseAudio creates the FIFO itself
        self.pa_file.write_text(
            f"load-module module-native-protocol-unix auth-anonymous=1 "
            f"socket={self.socket_path}\n"
            f"load-module module-pipe-source {self.module_args}\n"
            f"set-default-source {SOURCE_NAME}\n")
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                ["pulseaudio", "--daemonize=no", "-n", "-F", str(self.pa_file),
                 "--exit-idle-time=-1", "--use-pid-file=no", "--disallow-exit",
                 "--system=no"],
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                cwd=str(rt))
        finally:
            log.close()
        self._finalizer = weakref.finalize(self, _terminate, self.proc)
        try:
            self._wait_server_ready()
            self._module_index = self._find_module_index()
            self._stop.clear()
            self._thread = threading.Thread(target=self._feeder_main,
                                             name="vmic-feeder", daemon=True)
            self._thread.start()
            self._wait_fed(time.monotonic() + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the feeder, end the daemon by PID, remove a /tmp runtime dir."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            if self._thread.is_alive():  # pragma: no cover - should not happen
                self.feeder_error = self.feeder_error or VirtualMicError(
                    "feeder thread did not stop")
            self._thread = None
        self._close_fd()
        if self.proc is not None:
            _terminate(self.proc)
            if self._finalizer is not None:
                self._finalizer.detach()
        if self._rt_created:
            shutil.rmtree(self._rt_created, ignore_errors=True)
            self._rt_created = None

    def check(self) -> None:
        """Raise if the feeder thread died with an exception."""
        if self.feeder_error is not None:
            raise VirtualMicError(f"feeder thread failed: {self.feeder_error!r}") \
                from self.feeder_error

    # ---------------------------------------------------------------- control
    def pactl(self, *args: str, timeout: float = 10.0) -> str:
        r = subprocess.run(["pactl", *args], env=self.env, capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode != 0:
            raise VirtualMicError(
                f"pactl {' '.join(args)} failed ({r.returncode}): "
                f"{r.stderr.strip()}\n{self._log_tail()}")
        return r.stdout

    def unplug(self, timeout: float = 10.0) -> None:
        """Unload the pipe source: the device disappears, the FIFO is deleted."""
        if self._module_index is None:
            raise VirtualMicError("not plugged in")
        self.pactl("unload-module", str(self._module_index))
        self._module_index = None
        deadline = time.monotonic() + timeout
        while os.path.lexists(self.fifo_path):
            if time.monotonic() > deadline:
                raise VirtualMicError("FIFO still exists after unload-module")
            time.sleep(0.01)

    def replug(self, timeout: float = 10.0) -> None:
        """Load the pipe source again (same args), make it default, and wait
        until the feeder is writing into the new FIFO."""
        if self._module_index is not None:
            raise VirtualMicError("already plugged in")
        with self._cond:
            self._fed_ino = None  # the new FIFO may reuse the old inode number
        out = self.pactl("load-module", "module-pipe-source", *self.module_args.split())
        self._module_index = int(out.strip())
        self.pactl("set-default-source", SOURCE_NAME)
        self._wait_fed(time.monotonic() + timeout)

    @property
    def plugged(self) -> bool:
        return self._module_index is not None

    def play(self, samples: np.ndarray) -> PlayHandle:
        """Queue int16 audio, shape (n,) or (n, channels).

        A 1-D array is sent to every channel.  Returns a ``PlayHandle``.
        """
        a = np.asarray(samples)
        if a.dtype != np.int16:
            raise TypeError(f"samples must be int16, got {a.dtype}")
        if a.ndim == 1:
            a = np.repeat(a[:, None], self.channels, axis=1)
        if a.ndim != 2 or a.shape[1] != self.channels:
            raise ValueError(f"samples must have shape (n,) or (n, {self.channels}),"
                             f" got {a.shape}")
        self.check()
        if self._thread is None or not self._thread.is_alive():
            raise VirtualMicError("feeder is not running")
        a = np.ascontiguousarray(a, dtype="<i2")
        h = PlayHandle(len(a))
        if len(a) == 0:
            h.started_at = time.monotonic()
            h._set(h.started_at)
            return h
        with self._lock:
            self._clips.append([a, 0, h])
        return h

    def pending_frames(self) -> int:
        """Frames of clip audio not yet written (a carried-over chunk counts
        whole, including any silence padding after a clip end)."""
        with self._lock:
            return (sum(len(c[0]) - c[1] for c in self._clips)
                    + sum(len(c[0]) for c in self._carry) // self.frame_bytes)

    # ---------------------------------------------------------------- helpers
    def _log_tail(self, n: int = 2000) -> str:
        try:
            return "pulseaudio log:\n" + self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def _wait_server_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise VirtualMicError(f"pulseaudio exited with {rc}\n{self._log_tail()}")
            if self.socket_path.exists() and _is_fifo(self.fifo_path):
                r = subprocess.run(["pactl", "info"], env=self.env,
                                   capture_output=True, timeout=10)
                if r.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise VirtualMicError(f"pulseaudio not ready after "
                                      f"{self.startup_timeout} s\n{self._log_tail()}")
            time.sleep(0.02)

    def _find_module_index(self) -> int:
        for line in self.pactl("list", "short", "modules").splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1] == "module-pipe-source":
                return int(parts[0])
        raise VirtualMicError("module-pipe-source not loaded")

    def _wait_fed(self, deadline: float) -> None:
        """Wait until the feeder has written into the FIFO now at the path."""
        while True:
            try:
                st = os.stat(self.fifo_path)
                ident = (st.st_dev, st.st_ino)
            except FileNotFoundError:
                ident = None
            with self._cond:
                if ident is not None and self._fed_ino == ident:
                    return
                if self.feeder_error is not None or self._thread is None \
                        or not self._thread.is_alive():
                    break
                self._cond.wait(0.05)
            if time.monotonic() > deadline:
                raise VirtualMicError("feeder did not start writing into the FIFO")
        self.check()
        raise VirtualMicError("feeder is not running")

    # ----------------------------------------------------------------- feeder
    def _feeder_main(self) -> None:
        try:
            period = self.block_frames / self.rate
            t0 = time.monotonic()
            k = 0
            while not self._stop.is_set():
                deadline = t0 + k * period
                now = time.monotonic()
                if now < deadline:
                    self._stop.wait(deadline - now)
                    continue
                late = now - deadline
                if late > MAX_CATCHUP_S:
                    self.stats["resyncs"] += 1
                    t0, k = now, 0
                    late = 0.0
                self.max_late_s = max(self.max_late_s, late)
                self._tick()
                k += 1
        except BaseException as e:  # surfaced by check()/play()/stop()
            self.feeder_error = e
        finally:
            self._close_fd()
            with self._cond:
                self._cond.notify_all()

    def _close_fd(self) -> None:
        fd, self._fd, self._fd_ino = self._fd, None, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _ensure_open(self) -> int | None:
        """The FIFO fd, (re)opened as needed; None while there is no reader."""
        try:
            st = os.stat(self.fifo_path)
            ident = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            st = ident = None
        if self._fd is not None and self._fd_ino == ident:
            return self._fd
        if self._fd is not None:  # FIFO unlinked or replaced
            self.stats["stale_closes"] += 1
            self._close_fd()
        if st is None or not stat.S_ISFIFO(st.st_mode):
            return None
        try:
            fd = os.open(self.fifo_path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENXIO):  # gone / no reader yet
                return None
            raise
        fst = os.fstat(fd)
        if not stat.S_ISFIFO(fst.st_mode):
            os.close(fd)
            return None
        self._fd, self._fd_ino = fd, (fst.st_dev, fst.st_ino)
        self._expect_idle = None
        self._draining_ticks = 0
        self.stats["opens"] += 1
        return fd

    def _queued_bytes(self, fd: int) -> int | None:
        buf = array.array("i", [0])
        try:
            fcntl.ioctl(fd, termios.FIONREAD, buf, True)
        except OSError:
            return None
        return buf[0]

    def _build_chunks(self, may_start: bool) -> list:
        """Take one block from the clip queue (silence-padded) and split it
        into atomic chunks: list of (bytes, is_clip, finished, started).
        A clip that has not begun yet only begins if `may_start` (or if it
        directly follows the previous clip within this block)."""
        n = self.block_frames
        block = np.zeros((n, self.channels), dtype="<i2")
        finished = []  # (end frame within block, handle)
        started = []
        filled = 0
        with self._lock:
            while filled < n and self._clips:
                clip = self._clips[0]
                a, pos, h = clip
                if pos == 0 and filled == 0 and not may_start:
                    self.stats["clip_start_deferred"] += 1
                    break
                take = min(n - filled, len(a) - pos)
                block[filled:filled + take] = a[pos:pos + take]
                if pos == 0:
                    started.append((filled, h))
                filled += take
                clip[1] = pos + take
                if clip[1] >= len(a):
                    finished.append((filled, h))
                    self._clips.popleft()
        data = block.tobytes()
        clip_bytes = filled * self.frame_bytes
        chunks = []
        for off in range(0, len(data), self._chunk_bytes):
            end = min(off + self._chunk_bytes, len(data))
            fb = self.frame_bytes
            fin = [h for f, h in finished if off < f * fb <= end]
            sta = [h for f, h in started if off <= f * fb < end]
            chunks.append((data[off:end], off < clip_bytes, fin, sta))
        return chunks

    def _tick(self) -> None:
        fd = self._ensure_open()
        if fd is None:
            self.stats["unplugged_ticks"] += 1
            return
        queued = self._queued_bytes(fd)
        if queued is None:  # FIONREAD unsupported: rely on EAGAIN alone
            draining = True
        else:
            self.stats["last_queued_bytes"] = queued
            drained = self._expect_idle is not None and queued < self._expect_idle
            self._expect_idle = queued
            # twice in a row: a freshly (re)loaded pipe source reads the FIFO once even with
            # no client recording, and a clip begun then sat in the pipe and was discarded
            # when a client connected (test_unplug_replug on a loaded machine)
            self._draining_ticks = self._draining_ticks + 1 if drained else 0
            draining = self._draining_ticks >= DRAINING_TICKS_TO_START
        with self._lock:
            have_clip = bool(self._carry) or bool(self._clips)
        if queued is not None and queued >= self._max_queued_bytes:
            self.stats["clip_wait_ticks" if have_clip else "dropped_blocks"] += 1
            return
        with self._lock:
            chunks = self._carry
            self._carry = []
        if not chunks:
            chunks = self._build_chunks(may_start=draining)
        i = 0
        try:
            while i < len(chunks):
                data, _, fin, sta = chunks[i]
                os.write(fd, data)  # <= PIPE_BUF: all or EAGAIN
                if self._expect_idle is not None:
                    self._expect_idle += len(data)
                t = time.monotonic()
                for h in sta:
                    h.started_at = t
                for h in fin:
                    h._set(t)
                i += 1
        except BlockingIOError:
            self.stats["eagain"] += 1
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.ENXIO, errno.ENOENT, errno.EBADF):
                raise
            self.stats["epipe"] += 1
            self._close_fd()
        if i:
            self.stats["written_chunks"] += i
            with self._cond:
                self._fed_ino = self._fd_ino if self._fd is not None else self._fed_ino
                self._cond.notify_all()
        rest = [c for c in chunks[i:] if c[1]]  # keep clip audio, drop silence
        if rest:
            with self._lock:
                self._carry = rest + self._carry


def _is_fifo(p: Path) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(p).st_mode)
    except FileNotFoundError:
        return False
