"""Home Assistant add-on glue, run by the entrypoint when /data/options.json exists.

    addon.py config OPTIONS.json CONFIG.toml   # the add-on's options -> kws-stream's TOML config
    addon.py discover                          # once Wyoming answers, tell the Supervisor

The options are addon/config.yaml's `schema` (the Supervisor validated them); the file is
rewritten at every start, so the add-on's options page is the one place to change them.
`discover` posts `{"service": "wyoming", "config": {"uri": "tcp://HOSTNAME:PORT"}}` to the
Supervisor's /discovery (with $SUPERVISOR_TOKEN), as Wyoming add-ons do, and Home
Assistant's Wyoming integration offers the service. Stdlib only: it runs before the service.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.request
from pathlib import Path

PORT = int(os.environ.get("KWS_ADDON_PORT", "10400"))  # the tests use another
WAIT = 120.0  # s for the service to answer before discovery gives up


def toml(options: dict) -> str:
    """The TOML config for the add-on's options (json.dumps writes valid TOML strings and lists)."""
    keywords = [str(k) for k in options.get("keywords") or []]
    lines = [
        "# Written by the Home Assistant add-on from its options at every start: change them there.",
        "[model]", f"name = {json.dumps(str(options['model']))}",
        "[command]", f"enabled = {'true' if options['mode'] == 'command' else 'false'}",
        "[detection]", f"threshold = {float(options['threshold'])!r}", f"keywords = {json.dumps(keywords)}",
        "[service]", f"log_level = {json.dumps(str(options['log_level']))}",
        "[wyoming]", f'uri = "tcp://0.0.0.0:{PORT}"',
    ]
    return "\n".join(lines) + "\n"


def write_config(options_path: Path, config_path: Path) -> None:
    text = toml(json.loads(options_path.read_text()))
    config_path.parent.mkdir(parents=True, exist_ok=True)
    part = config_path.with_suffix(".part")
    part.write_text(text)
    part.replace(config_path)


def answers(port: int) -> bool:
    """Does the Wyoming service answer `describe`?"""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b'{"type": "describe"}\n')
            return b'"info"' in sock.makefile("rb").readline(65536)
    except OSError:
        return False


def discover() -> int:
    token = os.environ.get("SUPERVISOR_TOKEN")
    if not token:
        print("addon: no SUPERVISOR_TOKEN: not under the Supervisor, no discovery", file=sys.stderr)
        return 0
    deadline = time.monotonic() + WAIT
    while not answers(PORT):
        if time.monotonic() > deadline:
            print(f"addon: Wyoming did not answer on port {PORT} within {WAIT:.0f} s: no discovery", file=sys.stderr)
            return 1
        time.sleep(1)  # polls a service still loading its model; nothing to wait on instead
    supervisor = os.environ.get("SUPERVISOR_URL", "http://supervisor")
    body = json.dumps({"service": "wyoming", "config": {"uri": f"tcp://{socket.gethostname()}:{PORT}"}}).encode()
    request = urllib.request.Request(f"{supervisor}/discovery", data=body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            print(f"addon: discovery sent to the Supervisor (HTTP {reply.status})", file=sys.stderr)
    except OSError as exc:
        print(f"addon: discovery failed: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["config"] and len(argv) == 3:
        write_config(Path(argv[1]), Path(argv[2]))
        return 0
    if argv == ["discover"]:
        return discover()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
