"""`serve wyoming --zeroconf [NAME]`: the real mDNS announcement, seen by a real browser.

The server and a `zeroconf` ServiceBrowser run in a network namespace of their own (two
veth ends, 10.253.x.1-2/24, no route out), so the multicast never leaves this machine.
Needs root and `ip netns` (CI runs as root); skipped, saying why, without them.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from conftest import kws_command

from testsupport.daemon_process import terminate

TIMEOUT = 30.0  # s, generous for a loaded machine: probing the name takes ~1.5 s idle
GONE_WITHIN = 10.0  # s: without goodbye packets the record would stay for its TTL (120 s)
PORT = 10411  # the namespace is new, so any port is free; not 10400, to see it carried over

BROWSER = r"""
import json, sys
from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf

def changed(zeroconf, service_type, name, state_change):
    seen = {"event": state_change.name, "name": name}
    if state_change is not ServiceStateChange.Removed:
        info = zeroconf.get_service_info(service_type, name, timeout=5000)
        if info is not None:
            seen.update(port=info.port, addresses=sorted(info.parsed_addresses()))
    print(json.dumps(seen), flush=True)

zc = Zeroconf(ip_version=IPVersion.V4Only)
browser = ServiceBrowser(zc, "_wyoming._tcp.local.", handlers=[changed])
print(json.dumps({"event": "browsing"}), flush=True)
sys.stdin.read()  # until the test closes stdin
browser.cancel()
zc.close()
"""


class Lines:
    """A process's output, line by line, read by a thread: `next(timeout)` blocks."""

    def __init__(self, stream: IO[str]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.queue.put(line)
        self.queue.put(None)

    def until(self, predicate, timeout: float = TIMEOUT) -> str:  # noqa: ANN001
        """The first line (from now) for which predicate(line) holds; fails on timeout or EOF."""
        while True:
            try:
                line = self.queue.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"nothing matching within {timeout} s; seen:\n{''.join(self.seen)}")
            if line is None:
                pytest.fail(f"the stream ended; seen:\n{''.join(self.seen)}")
            self.seen.append(line)
            if predicate(line):
                return line

    def text(self) -> str:
        """Everything, once the stream has ended."""
        self.thread.join(TIMEOUT)
        while (line := self.queue.get_nowait()) is not None:
            self.seen.append(line)
        return "".join(self.seen)


@pytest.fixture()
def netns() -> Iterator[tuple[str, str]]:
    """(namespace name, its /24 prefix): the server's addresses are PREFIX.1 and PREFIX.2."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2's `ip netns` for a private network namespace")
    name = f"kws-zc-{os.getpid()}"
    net = f"10.253.{os.getpid() % 250}"
    setup = [["ip", "netns", "add", name],
             ["ip", "-n", name, "link", "set", "lo", "up"],
             ["ip", "-n", name, "link", "add", "zc0", "type", "veth", "peer", "name", "zc1"],
             ["ip", "-n", name, "addr", "add", f"{net}.1/24", "dev", "zc0"],
             ["ip", "-n", name, "addr", "add", f"{net}.2/24", "dev", "zc1"],
             ["ip", "-n", name, "link", "set", "zc0", "up"],
             ["ip", "-n", name, "link", "set", "zc1", "up"]]
    try:
        for cmd in setup:
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(f"cannot make a network namespace here: {' '.join(cmd)}: {done.stderr.strip()}")
        yield name, net
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def in_ns(ns: str, *cmd: str, env: dict[str, str], stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen[str]:
    return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def serve(ns: str, env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], Lines]:
    proc = in_ns(ns, *kws_command(), "serve", "wyoming", "--uri", f"tcp://0.0.0.0:{PORT}", *args, env=env)
    assert proc.stdout is not None
    return proc, Lines(proc.stdout)


def browse(ns: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], Lines]:
    proc = in_ns(ns, sys.executable, "-c", BROWSER, env=env, stdin=subprocess.PIPE)
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    lines.until(lambda line: '"browsing"' in line)
    return proc, lines


def end_browser(browser: subprocess.Popen[str]) -> None:
    """The browser exits when its stdin closes."""
    assert browser.stdin is not None
    browser.stdin.close()
    browser.wait(timeout=TIMEOUT)


def events(lines: Lines) -> list[dict]:
    return [json.loads(line) for line in lines.seen if line.startswith("{")]


def test_announced_with_its_name_and_port_then_withdrawn_when_the_server_stops(netns: tuple[str, str],
                                                                               cli_env: dict[str, str]) -> None:
    ns, net = netns
    browser, seen = browse(ns, cli_env)
    server, log = serve(ns, cli_env, "--zeroconf", "kitchen spotter")
    try:
        added = json.loads(seen.until(lambda line: '"Added"' in line))
        assert added["name"] == "kitchen spotter._wyoming._tcp.local."
        assert added["port"] == PORT
        assert added["addresses"] == [f"{net}.1", f"{net}.2"]  # 0.0.0.0: every address but loopback
        log.until(lambda line: "event=zeroconf_announced" in line)

        assert terminate(server, TIMEOUT) == 0
        removed = json.loads(seen.until(lambda line: '"Removed"' in line, timeout=GONE_WITHIN))
        assert removed["name"] == added["name"]
        text = log.text()
        assert "event=zeroconf_withdrawn" in text and "Traceback" not in text, text
    finally:
        terminate(server, TIMEOUT)
        end_browser(browser)


def test_off_by_default_and_the_default_name_is_the_host_name(netns: tuple[str, str],
                                                              cli_env: dict[str, str]) -> None:
    ns, _ = netns
    browser, seen = browse(ns, cli_env)
    quiet, quiet_log = serve(ns, cli_env)  # no --zeroconf
    try:
        quiet_log.until(lambda line: "event=listening" in line)
        named = in_ns(ns, *kws_command(), "serve", "wyoming", "--uri", f"tcp://0.0.0.0:{PORT + 1}", "--zeroconf",
                      env=cli_env)
        assert named.stdout is not None
        Lines(named.stdout)  # drained, so its log never blocks it
        try:
            added = json.loads(seen.until(lambda line: '"Added"' in line))
            assert added["name"] == f"kws-stream-{socket.gethostname()}._wyoming._tcp.local."
            assert added["port"] == PORT + 1
            # the quiet server was listening before the other started: had it announced
            # itself, the browser would have seen it first
            assert [e["port"] for e in events(seen) if e["event"] == "Added"] == [PORT + 1]
        finally:
            assert terminate(named, TIMEOUT) == 0
    finally:
        assert terminate(quiet, TIMEOUT) == 0
        end_browser(browser)


def test_a_unix_socket_cannot_be_announced(run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    done = run_cli("serve", "wyoming", "--uri", f"unix://{tmp_path / 'kws.sock'}", "--zeroconf")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"kws-stream: --zeroconf announces a TCP service: use --uri tcp://0.0.0.0:PORT, not "
        f"'unix://{tmp_path / 'kws.sock'}'")
    assert "Traceback" not in done.stderr


def test_the_uri_decides_what_is_announced() -> None:
    from kws_stream.zeroconf_announce import ZeroconfError, addresses, endpoint

    assert endpoint("tcp://0.0.0.0:10400") == ("0.0.0.0", 10400)
    assert endpoint("tcp://192.0.2.7:10500") == ("192.0.2.7", 10500)
    assert addresses("192.0.2.7") == ["192.0.2.7"]
    with pytest.raises(ZeroconfError, match="TCP service"):
        endpoint("tcp://0.0.0.0")  # no port


def test_a_name_already_announced_gets_a_number(netns: tuple[str, str], cli_env: dict[str, str]) -> None:
    ns, _ = netns
    browser, seen = browse(ns, cli_env)
    first, first_log = serve(ns, cli_env, "--zeroconf", "twin")
    try:
        seen.until(lambda line: '"Added"' in line)
        second = in_ns(ns, *kws_command(), "serve", "wyoming", "--uri", f"tcp://0.0.0.0:{PORT + 1}",
                       "--zeroconf", "twin", env=cli_env)
        assert second.stdout is not None
        second_log = Lines(second.stdout)
        try:
            again = json.loads(seen.until(lambda line: '"Added"' in line))
            assert again["port"] == PORT + 1 and again["name"] == "twin-2._wyoming._tcp.local."
            second_log.until(lambda line: "event=zeroconf_announced" in line and "name='twin-2'" in line)
        finally:
            assert terminate(second, TIMEOUT) == 0
    finally:
        assert terminate(first, TIMEOUT) == 0
        end_browser(browser)
    assert "Traceback" not in first_log.text()
