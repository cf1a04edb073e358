"""The live daemon: the same Pipeline as `detect`, fed by a capture thread.

Threads, each owned and joined:
- PortAudio's callback thread copies blocks into the session's ring (capture.py);
- the worker converts to 16 kHz mono, runs the Pipeline and publishes detections;
- the main thread supervises: opens and reopens the device with backoff, notices a
  device that stopped delivering audio, pings the systemd watchdog only while the
  worker makes progress, reloads the config on SIGHUP and stops on SIGTERM/SIGINT
  (handled from the very start, before the model loads: see service.Signals);
- the event bus gives each sink its own thread and bounded queue (events.py).

A SIGHUP changes the pipeline's parameters in place (applied by the worker between blocks;
the enrolled words are read again with them) and rebuilds the sinks only when `[output]` or
`[mqtt]` changed: the supervisor swaps the worker's bus, closes the old one (what MQTT could
not deliver passes to the new sink), then starts the new one. The audio worker never waits
for a sink to close.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from . import __version__
from . import config as cfg
from .backend import KeywordModel
from .capture import CaptureSession, DeviceError, open_capture, portaudio
from .errors import KwsError
from .events import EventBus, Sink
from .features import SAMPLE_RATE
from .judge import load_judge
from .metrics import DaemonStats, Metrics
from .pipeline import Pipeline, PipelineParams
from .record import Recorder
from .service import Notifier, Signals, StopRequested
from .sinks import build_sinks, stdout_reader_gone
from .worker import WORKER_WAIT, Worker

log = logging.getLogger(__name__)

SUPERVISOR_TICK = 1.0  # s between health checks (a signal wakes it at once): each tick costs a
# Python wake-up, and nothing it checks needs a finer step (no_audio_timeout is >= 0.5 s)
# A tick this much later than due means the whole process got no CPU (a frozen or starved
# machine): the device and the worker were as frozen as this thread, so neither is judged
# until they have had GRACE_AFTER_STARVED_S of CPU-time-to-be-seen again.
STARVED_TICK_LATE_S = 1.0
GRACE_AFTER_STARVED_S = 2.0
RECONNECT_BACKOFF = (1.0, 2.0, 4.0, 8.0)  # s between reopen attempts (in supervisor ticks), the last repeats
STOP_BUDGET = 1.5  # s to finish captured audio and flush sinks (systemd allows 5 s, tests 2 s)
DRAIN_BUDGET = 0.8  # s of that the worker may spend on audio captured before the stop; the rest is dropped, logged
Loaded = tuple[cfg.Config, PipelineParams]  # the config, and the pipeline's parameters with the enrolled words
RESTART_ONLY = ("audio", "model", "metrics")  # config sections a SIGHUP cannot change in place
SINK_SECTIONS = ("output", "mqtt")  # a SIGHUP rebuilds the sinks only when one of these changed


class Daemon:
    def __init__(self, config: cfg.Config, reload_config: Callable[[], Loaded],
                 pipeline: Pipeline, notifier: Notifier, signals: Signals) -> None:
        self.config = config
        self._reload_config = reload_config
        self.notifier = notifier
        self.stop = signals.stop
        self.reload = signals.reload
        self._wake = signals.wake
        self.worker = Worker(pipeline, EventBus(build_sinks(config, pipeline.model_name)),  # started by run()
                             Recorder.from_env())
        self._session: CaptureSession | None = None
        self._next_open = 0.0
        self._failures = 0
        self._reconnects = 0
        self._ready_sent = False
        self._last_ping = 0.0
        self._stall_logged = False
        self._last_tick = time.monotonic()
        self._judge_from = 0.0  # monotonic time from which device and worker health are judged
        self._last_status = 0.0
        self._input_overflows_closed = 0  # PortAudio overflows of sessions already closed
        self.metrics: Metrics | None = None

    def run(self) -> int:
        self.notifier.status("waiting for the input device")
        if self.config.metrics.enabled:
            self.metrics = Metrics(self.stats)
            self.worker.pipeline.inference_observer = self.metrics.inference_seconds.observe
            port = self.metrics.serve(self.config.metrics.host, self.config.metrics.port)
            log.info("event=metrics_listening address=%s:%d", self.config.metrics.host, port)
        self.worker.bus.start()
        self.worker.start()
        try:
            while not self.stop.is_set():
                self._wake.clear()  # before looking: a signal from here on ends the next wait
                self._supervise()
                self._wake.wait(SUPERVISOR_TICK)
        finally:
            clean = self._shutdown()
        return 0 if clean else 1

    def _supervise(self) -> None:
        now = time.monotonic()
        if now - self._last_tick > SUPERVISOR_TICK + STARVED_TICK_LATE_S:
            if now >= self._judge_from:  # once per episode
                log.warning("event=process_starved seconds=%.1f note=health_checks_paused", now - self._last_tick)
            self._judge_from = now + GRACE_AFTER_STARVED_S
        judging = now >= self._judge_from
        try:
            self._check(now, judging)
        finally:
            self._last_tick = time.monotonic()  # the wait starts now: a slow reopen is not starvation

    def _check(self, now: float, judging: bool) -> None:
        if self.worker.bus.sink_closed.is_set() or (self.config.output.stdout and stdout_reader_gone()):
            # `kws-stream run | head -1`: the reader is gone
            log.info("event=output_closed action=stopping")
            self.stop.set()
            return
        if self.reload.is_set():
            self.reload.clear()
            self._apply_reload()
        if judging and self._session is not None and not self._session.alive(self.config.audio.no_audio_timeout):
            log.error("event=device_lost device=%r action=reconnecting", self._session.device_name)
            self.notifier.status(f"device lost: {self._session.device_name}; reconnecting")
            self._close_session()
            self._next_open = now
        if self._session is None and now >= self._next_open:
            self._try_open(now)
        if not self._ready_sent and self.worker.audio_flowing.is_set():
            self._ready_sent = True
            self.notifier.ready(self._status_text())
            log.info("event=ready device=%r", self._session.device_name if self._session else "")
        if judging:
            self._watchdog(now)
        if now - self._last_status >= min(self.config.service.status_interval, 10.0):
            self._last_status = now
            self.notifier.status(self._status_text())
            log.debug("event=stats %s", self._status_text())

    def _try_open(self, now: float) -> None:
        a = self.config.audio
        try:
            session = open_capture(a.device, a.sample_rate, a.channels, a.channel_index(), a.block_ms,
                                   reinitialise=self._failures > 0 or self._reconnects > 0)
        except (DeviceError, KwsError) as exc:
            delay = RECONNECT_BACKOFF[min(self._failures, len(RECONNECT_BACKOFF) - 1)]
            if self._failures == 0:
                log.error("event=device_unavailable error=%r action=retrying", str(exc))
                self.notifier.status(f"waiting for the input device: {exc}")
            self._failures += 1
            self._next_open = now + delay
            return
        if self._failures or self._reconnects:
            log.warning("event=device_back device=%r after_attempts=%d", session.device_name, self._failures)
        log.info("event=capture_started device=%r rate=%d channels=%d resampling=%s",
                 session.device_name, session.rate, session.channels, session.rate != SAMPLE_RATE)
        self._failures = 0
        self._session = session
        self.worker.session = session

    def _close_session(self) -> None:
        if self._session is not None:
            self._reconnects += 1
            self._input_overflows_closed += self._session.input_overflows
            self._session.close()
            self._session = None
            self.worker.session = None  # the worker finishes what the device delivered

    def _watchdog(self, now: float) -> None:
        """Ping only while the worker loop is alive: a stuck worker gets restarted by systemd."""
        interval = self.notifier.watchdog_interval
        if interval is None or now - self._last_ping < interval:
            return
        # The worker beats every 0.1 s of audio it processes: one that is behind still beats.
        if now - self.worker.heartbeat < max(interval, 2 * WORKER_WAIT + SUPERVISOR_TICK):
            self.notifier.watchdog()
            self._last_ping = now
            self._stall_logged = False
        elif not self._stall_logged:  # once per stall; checked again every tick
            log.error("event=worker_stalled seconds=%.1f action=watchdog_pings_stopped",
                      now - self.worker.heartbeat)
            self._stall_logged = True

    def _apply_reload(self) -> None:
        try:
            new, params = self._reload_config()
            rebuild = [s for s in SINK_SECTIONS if getattr(new, s) != getattr(self.config, s)]
            sinks = build_sinks(new, self.worker.pipeline.model_name) if rebuild else None
        except Exception as exc:  # whatever a bad file raises (UnicodeDecodeError, RecursionError...)
            log.error("event=reload_rejected error=%r action=keeping_old_config", _one_line(exc))
            return
        restart_only = [s for s in RESTART_ONLY if getattr(new, s) != getattr(self.config, s)]
        if restart_only:
            log.warning("event=reload_partial sections=%s note=these_apply_after_a_restart", ",".join(restart_only))
        self.config = replace(new, **{s: getattr(self.config, s) for s in RESTART_ONLY})
        logging.getLogger("kws_stream").setLevel(new.service.log_level.upper())
        self.worker.reconfigure(params)
        closing = f" close_s={self._replace_sinks(sinks):.2f}" if sinks is not None else ""
        log.info("event=reloaded threshold=%s keywords=%s words=%s sinks=%s%s", new.detection.threshold,
                 ",".join(new.detection.keywords) or "all", ",".join(params.words.names) or "none",
                 "rebuilt:" + ",".join(rebuild) if rebuild else "kept", closing)

    def _replace_sinks(self, sinks: list[Sink]) -> float:
        """Swap in new sinks; close the old ones here on the supervisor thread, before the new
        ones connect (the same MQTT client id must not hold two sessions), handing over what
        they could not deliver. Detections of the meantime wait in the new bus's queues.
        Returns the seconds the close took (at most ~2 s with MQTT: mqtt.CLOSE_TIMEOUT for
        acknowledgements, then joining paho's thread), during which the supervisor waits."""
        started = time.monotonic()
        new = EventBus(sinks)
        old = self.worker.swap_bus(new)
        old.close(successor=new)
        new.start()
        return time.monotonic() - started

    def stats(self) -> DaemonStats:
        session = self._session
        input_overflows = self._input_overflows_closed + (session.input_overflows if session else 0)
        errors, dropped = self.worker.bus.sink_counts()
        return DaemonStats(
            detections=dict(self.worker.detections_by_keyword),
            audio_seconds=self.worker.samples_processed / SAMPLE_RATE,
            ring_overflow_seconds=self.worker.ring_overflow_seconds,
            input_overflows=input_overflows,
            reconnects=self._reconnects,
            sink_errors=errors,
            sink_dropped=dropped,
            device_up=session is not None and session.alive(self.config.audio.no_audio_timeout),
        )

    def _status_text(self) -> str:
        device = self._session.device_name if self._session else "none"
        seconds = self.worker.samples_processed / SAMPLE_RATE
        stats = self.stats()
        return (f"listening device={device} audio_s={seconds:.0f} detections={self.worker.detections} "
                f"ring_overflow_s={stats.ring_overflow_seconds:.2f} input_overflows={stats.input_overflows} "
                f"reconnects={self._reconnects}")

    def _shutdown(self) -> bool:
        started = time.monotonic()
        deadline = started + STOP_BUDGET
        self.notifier.stopping()
        log.info("event=stopping %s", self._status_text())
        if self._session is not None:
            self._session.stream.stop(ignore_errors=True)  # no new audio; the ring keeps what arrived
        self.worker.request_stop(started + DRAIN_BUDGET)
        # The worker checks its drain deadline every SLICE, so it ends soon after it even when
        # stopping the stream took long under load; only a worker stuck in one call misses this.
        clean = self.worker.join(max(0.5, deadline - time.monotonic() - 0.2))
        if not clean:
            log.error("event=worker_not_stopped action=exiting")
        if self._session is not None:
            self._session.close()
        self.worker.bus.close(timeout=max(0.1, deadline - time.monotonic()))
        if self.metrics is not None:
            self.metrics.close()
        return clean


def _one_line(exc: BaseException) -> str:
    """A KwsError's message as is; anything else with its type, on one line."""
    text = " ".join(str(exc).split())
    if isinstance(exc, KwsError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_service(load_config: Callable[[], Loaded], setup_logging: Callable[[str], None],
                open_model: Callable[[cfg.Config], tuple[KeywordModel, str]]) -> int:
    """`kws-stream run`: signal handlers first, then the config and the model, then supervise.

    `load_config` (the config and the pipeline's parameters, enrolled words included) is
    called again on each SIGHUP. A SIGTERM while the model loads or downloads ends the
    start at once with exit 0.
    """
    signals = Signals().install()
    try:
        config, params = load_config()
        setup_logging(config.service.log_level)
        portaudio()  # before the model: listing devices maps every ALSA plugin for a moment
        model, model_name = open_model(config)
        d = config.detection
        log.info("event=start version=%s model=%s runtime=%s mode=%s stride=%d smoothing=%d threshold=%s "
                 "keywords=%s words=%s device=%r", __version__, model_name, model.runtime,
                 "command" if config.command.enabled else "plain", d.stride, d.smoothing, d.threshold,
                 ",".join(d.keywords) or "all", ",".join(params.words.names) or "none", config.audio.device or "default")
        judge = load_judge()  # in plain mode too: a reload may turn command mode on (the Pipeline skips it in plain mode)
        pipeline = Pipeline(model, model_name, f"mic:{config.audio.device or 'default'}",
                            params, judge=judge)  # the worker stamps `time`
        signals.starting = False  # from here a stop request only sets `signals.stop`
    except StopRequested as exc:
        log.info("event=stopped_while_starting signal=%s", exc)
        return 0
    with Notifier() as notifier:
        return Daemon(config, load_config, pipeline, notifier, signals).run()
