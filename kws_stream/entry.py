"""The `kws-stream` console entry point: SIGHUP made harmless before the heavy imports.

Importing the CLI (numpy, the TFLite runtime) takes ~0.8 s on a loaded Pi, and until a
handler exists SIGHUP's default action kills the process, which systemd's
`Restart=on-failure` does not restart. So the first thing after the interpreter starts is a
handler that only remembers the signal; `service.Signals.install()` takes it over and turns
a remembered SIGHUP into a reload (`run`), or the service logs and ignores it (`serve wyoming`).
A SIGTERM in that time ends the process at once with exit 0, as it does later while the model
loads (`service.StopRequested`). The interpreter's own start-up, before this module runs,
is covered by the systemd unit, which starts us with SIGHUP blocked; `main` unblocks it.
"""

from __future__ import annotations

import os
import signal


class EarlyHangup:
    """SIGHUP handler for the first moments after exec: remembers that one came."""

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum: int, frame: object) -> None:
        self.received = True


def _early_stop(signum: int, frame: object) -> None:
    raise SystemExit(0)  # nothing started yet: nothing to clean up


def restore_default_signals() -> None:
    """For the commands that are not services (`detect`, `models`...): SIGHUP and SIGTERM act
    as usual again, and a SIGHUP remembered so far is delivered now, as it would have been."""
    early = signal.getsignal(signal.SIGHUP)
    if isinstance(early, EarlyHangup):
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        if early.received:
            os.kill(os.getpid(), signal.SIGHUP)
    if signal.getsignal(signal.SIGTERM) is _early_stop:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main() -> int:
    signal.signal(signal.SIGHUP, EarlyHangup())
    signal.signal(signal.SIGTERM, _early_stop)
    # The unit starts us with SIGHUP blocked (`env --block-signal=HUP`) to cover the
    # interpreter's own start-up; one that came meanwhile is delivered to EarlyHangup now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    from .cli import main as cli_main  # the heavy imports

    return cli_main()
