"""The `kws-stream` console entry point: SIGHUP made harmless before the heavy imports.

Importing the CLI (numpy, the TFLite runtime) takes ~0.8 s on a loaded Pi, and until a
handler exists SIGHUP's default action kills the process, which systemd's
`Restart=on-failure` does not restart. So the first thing after the interpreter starts is a
handler that only remembers the signal; `service.Signals.install()` takes it over and turns
a remembered SIGHUP into a reload (`run`), or the service logs and ignores it (`serve wyoming`).
Only the interpreter's own start-up (before this module runs) remains unprotected.
"""

from __future__ import annotations

import signal


class EarlyHangup:
    """SIGHUP handler for the first moments after exec: remembers that one came."""

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum: int, frame: object) -> None:
        self.received = True


def main() -> int:
    signal.signal(signal.SIGHUP, EarlyHangup())
    from .cli import main as cli_main  # the heavy imports

    return cli_main()
