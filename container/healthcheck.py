"""The container's health check: `serve wyoming` answers `describe` with an `info` event
within the timeout; any other command is healthy while PID 1 lives (it is the check's
parent's business to restart it). Exit 0 healthy, 1 not; stdlib only, so it starts fast."""

import json
import os
import socket
import sys
from pathlib import Path

TIMEOUT = 4.0


def main() -> int:
    cmdline = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    if b"serve" not in cmdline:
        return 0
    port = int(os.environ.get("KWS_HEALTH_PORT", "10400"))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(b'{"type": "describe"}\n')
            line = sock.makefile("rb").readline(65536)
        kind = json.loads(line).get("type")
    except (OSError, ValueError) as exc:
        print(f"unhealthy: Wyoming describe on 127.0.0.1:{port}: {exc}", file=sys.stderr)
        return 1
    if kind != "info":
        print(f"unhealthy: describe answered {kind!r}, not 'info'", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
