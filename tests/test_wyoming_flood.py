"""Issue 25 item 6: idle connections must not lock Home Assistant out of `serve wyoming`.

Before: with `max_clients = 16`, 16 connections that sent nothing held every slot for
`idle_timeout` (60 s, renewable) and the next client, Home Assistant included, was closed at
once with 0 bytes. The real command runs here on 127.0.0.1 under a 1,024-descriptor limit with
its default settings, against 1,100 real idle TCP connections.
"""

from __future__ import annotations

import resource
import selectors
import socket
import time
from pathlib import Path

import pytest
from test_wyoming import Server, run
from wyoming.info import Describe, Info

from kws_stream.wyoming_server import FIRST_EVENT_TIMEOUT

FLOOD = 1100
FD_LIMIT = 1024


def limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@pytest.fixture
def flood_room() -> None:
    """This test process holds the 1,100 client sockets: raise its own soft limit if needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = FLOOD + 200
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"the test needs {need} file descriptors; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def open_idle(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        socks.append(s)
    return socks


def wait_all_closed(socks: list[socket.socket], timeout: float) -> int:
    """Wait until the server has closed every socket (EOF or reset); returns how many it closed."""
    closed = 0
    with selectors.DefaultSelector() as sel:
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while closed < len(socks) and (remaining := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(remaining):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(4096)
                except ConnectionError:
                    data = b""
                assert data == b"", f"an idle connection was sent {data!r}"
                sel.unregister(sock)
                closed += 1
    return closed


async def describe_seconds(server: Server) -> float:
    started = time.monotonic()
    async with server.client() as client:
        await client.write_event(Describe().event())
        event = await client.read_event()
    assert event is not None, "the new client was closed without an answer"
    assert Info.is_type(event.type)
    return time.monotonic() - started


def test_1100_idle_connections_under_a_1024_fd_limit_do_not_lock_a_new_client_out(
        cli_env: dict[str, str], tmp_path: Path, flood_room: None) -> None:
    server = Server(cli_env, tmp_path / "server.log", preexec_fn=limit_descriptors)  # max_clients 16, idle 60 s
    socks: list[socket.socket] = []
    try:
        socks = open_idle(server.port, FLOOD)
        seconds = run(describe_seconds(server))
        assert seconds < 2.0, f"describe took {seconds:.2f} s"
        # ... and the flood is gone long before idle_timeout: evicted, or cut at the first-event deadline
        closed = wait_all_closed(socks, FIRST_EVENT_TIMEOUT + 25)
        assert closed == FLOOD
        assert run(describe_seconds(server)) < 2.0
    finally:
        for s in socks:
            s.close()
        status = server.stop()
    text = server.text()
    assert status == 0, text
    assert "Traceback" not in text and "out of system resource" not in text
    evictions = [line for line in text.splitlines() if "event=client_evicted" in line]
    assert len(evictions) == 1, evictions  # a flood is one line a minute
    assert "spoke=False max_clients=16" in evictions[0]


def test_a_connection_that_sends_nothing_is_closed_at_the_first_event_deadline(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    server = Server(cli_env, tmp_path / "server.log")  # idle_timeout 60 s
    try:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            assert wait_all_closed([s], 30) == 1
        assert time.monotonic() - started >= FIRST_EVENT_TIMEOUT - 0.5
    finally:
        status = server.stop()
    assert status == 0
    assert "event=client_idle_timeout" in server.text() and "idle_s=5 first_event=True" in server.text()
