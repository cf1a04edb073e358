"""The Prometheus scrape endpoint: an asyncio HTTP server on its own thread.

Its own module so that asyncio is imported only when `[metrics]` is enabled.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

log = logging.getLogger("kws_stream.metrics")

REQUEST_TIMEOUT = 10.0  # s for a client to send its request head (and take the answer)
MAX_CONNECTIONS = 64  # open connections; one more closes the oldest (logged)
MAX_REQUEST_HEAD = 8192  # bytes of request line + headers
EVICTION_LOG_INTERVAL = 60.0  # s between log lines while connections are being evicted
CLOSE_TIMEOUT = 2.0  # s close() waits for the endpoint thread


class Endpoint:
    """The scrape endpoint: one thread running an asyncio loop, one request per connection.

    prometheus_client's own server spends a thread per connection and waits forever for a
    request, so every idle or half-sent request held a thread (6 -> 306 threads). Here an open
    connection costs a file descriptor, not a thread; a request head must arrive within
    REQUEST_TIMEOUT, and at most MAX_CONNECTIONS are open at once (a new one closes the oldest).
    """

    def __init__(self, registry: Any) -> None:
        self._registry = registry
        self._open: dict[asyncio.StreamWriter, None] = {}  # oldest first
        self._evicted = 0
        self._eviction_logged = -EVICTION_LOG_INTERVAL
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="metrics-http", daemon=True)

    def start(self, host: str, port: int) -> int:
        """Listen on host:port and serve from the endpoint's thread; returns the bound port."""
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, host, port, limit=MAX_REQUEST_HEAD))
        except BaseException:
            self._loop.close()
            raise
        self._thread.start()
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._open) >= MAX_CONNECTIONS:
            self._evict_oldest()
        self._open[writer] = None
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            method = head.split(b" ", 1)[0]
            if method in (b"GET", b"HEAD"):
                from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

                body = generate_latest(self._registry)
                writer.write(_response(b"200 OK", CONTENT_TYPE_LATEST, body if method == b"GET" else b"",
                                       len(body)))
            else:
                writer.write(_response(b"405 Method Not Allowed", "text/plain", b"GET only\n"))
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # idle, cut, oversized, evicted or unread: just close it
        finally:
            self._open.pop(writer, None)
            writer.close()

    def _evict_oldest(self) -> None:
        """Make room by closing the connection that has waited longest for its request: a real
        scrape sends its request at once, so a flood of idle connections cannot lock it out."""
        oldest = next(iter(self._open))
        del self._open[oldest]
        oldest.close()  # its reader sees EOF and its task ends
        self._evicted += 1
        now = time.monotonic()
        if now - self._eviction_logged >= EVICTION_LOG_INTERVAL:  # a flood is one line a minute
            self._eviction_logged = now
            log.warning("event=metrics_connections_full max_connections=%d action=closed_oldest closed_total=%d",
                        MAX_CONNECTIONS, self._evicted)

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            open_connections = asyncio.all_tasks() - {asyncio.current_task()}
            for task in open_connections:
                task.cancel()
            await asyncio.gather(*open_connections, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(CLOSE_TIMEOUT)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CLOSE_TIMEOUT)
            if not self._thread.is_alive():
                self._loop.close()


def _response(status: bytes, content_type: str, body: bytes, length: int | None = None) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type.encode() +
            b"\r\nContent-Length: " + str(len(body) if length is None else length).encode() +
            b"\r\nConnection: close\r\n\r\n" + body)
