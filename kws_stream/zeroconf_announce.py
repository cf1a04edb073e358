"""`serve wyoming --zeroconf [NAME]`: announce the service over mDNS as `_wyoming._tcp`.

Home Assistant's Wyoming integration browses `_wyoming._tcp.local.` and offers what it
finds, so no address needs typing (wyoming-openwakeword announces itself the same way).
The record is `NAME._wyoming._tcp.local.` with the listening port and the addresses the
service is reached at: the `--uri` host, or for a wildcard host (`0.0.0.0`, empty) every
non-loopback IPv4 address of the machine.

Timing: `Announcing` wraps the service's notifier, so the announcement starts when the
server is listening (`ready`) and is withdrawn (mDNS goodbye packets, TTL 0) when it stops
(`stopping`); `close` ends it on any exit. zeroconf runs its own event-loop thread (the
`Zeroconf` is created before the server's loop starts), so announcing neither blocks nor
shares the Wyoming server's loop; registration (probing the name, ~1 s) finishes in the
background and is logged (`zeroconf_announced`, or `zeroconf_failed` with the reason).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import socket
from typing import Any
from urllib.parse import urlsplit

from .errors import KwsError

log = logging.getLogger("kws_stream")

SERVICE_TYPE = "_wyoming._tcp.local."
WITHDRAW_TIMEOUT = 3.0  # s: the goodbye packets take ~0.4 s; never hold up the exit longer


class ZeroconfError(KwsError):
    """A `--zeroconf` that cannot work with this `--uri`."""

    exit_code = 2


def default_name() -> str:
    """`kws-stream-HOSTNAME`, cut to DNS-SD's 63-byte instance label."""
    return f"kws-stream-{socket.gethostname()}".encode()[:63].decode("utf-8", "ignore")


def endpoint(uri: str) -> tuple[str, int]:
    """The (host, port) of a `tcp://HOST:PORT` URI; anything else cannot be announced."""
    parts = urlsplit(uri)
    if parts.scheme != "tcp" or parts.port is None:
        raise ZeroconfError(f"--zeroconf announces a TCP service: use --uri tcp://0.0.0.0:PORT, not {uri!r}")
    return parts.hostname or "", parts.port


def addresses(host: str) -> list[str]:
    """The IPv4 addresses to announce for a listening `host` (see the module docstring)."""
    if host and host not in ("0.0.0.0", "::"):
        try:
            return [str(ipaddress.IPv4Address(host))]
        except ValueError:
            try:
                return [socket.gethostbyname(host)]
            except OSError as exc:
                raise ZeroconfError(f"--zeroconf: cannot resolve the --uri host {host!r}: {exc}") from None
    import ifaddr

    found = [str(ip.ip) for adapter in ifaddr.get_adapters() for ip in adapter.ips
             if ip.is_IPv4 and not ipaddress.IPv4Address(ip.ip).is_loopback]
    if not found:
        raise ZeroconfError("--zeroconf: this machine has no network address but loopback to announce")
    return sorted(set(found))


class Announcing:
    """The service's notifier, plus the zeroconf announcement from `ready` to `stopping`."""

    def __init__(self, notifier: Any, uri: str, name: str | None) -> None:
        from zeroconf import IPVersion, ServiceInfo, Zeroconf

        host, port = endpoint(uri)
        self.notifier = notifier
        self.name = name or default_name()
        self.addresses = addresses(host)
        self.info = ServiceInfo(SERVICE_TYPE, f"{self.name}.{SERVICE_TYPE}", port=port,
                                parsed_addresses=self.addresses, server=f"{socket.gethostname()}.local.")
        try:
            self.zeroconf = Zeroconf(ip_version=IPVersion.V4Only)  # starts its own loop thread
        except OSError as exc:
            raise ZeroconfError(f"--zeroconf: cannot open mDNS (UDP 5353): {exc.strerror or exc}") from None
        assert self.zeroconf.loop is not None
        self.loop = self.zeroconf.loop
        self.registering: concurrent.futures.Future[None] | None = None

    def ready(self, status: str) -> None:
        self.notifier.ready(status)
        self.registering = asyncio.run_coroutine_threadsafe(self._register(), self.loop)
        self.registering.add_done_callback(self._registered)

    def stopping(self) -> None:
        self.notifier.stopping()
        self.withdraw()

    def __getattr__(self, attr: str) -> Any:  # everything else a notifier does, unchanged
        return getattr(self.notifier, attr)

    async def _register(self) -> None:
        # a name already taken on the network becomes NAME-2 etc. (DNS-SD's rule), not a failure
        await (await self.zeroconf.async_register_service(self.info, allow_name_change=True))

    def _registered(self, future: concurrent.futures.Future[None]) -> None:
        if future.cancelled():
            return
        if future.exception() is not None:
            log.error("event=zeroconf_failed name=%r reason=%r", self.name, str(future.exception()))
        else:
            log.info("event=zeroconf_announced type=%s name=%r port=%d addresses=%s", SERVICE_TYPE,
                     self.info.name.removesuffix("." + SERVICE_TYPE), self.info.port, ",".join(self.addresses))

    def withdraw(self) -> None:
        """Send the goodbye packets (once); a registration still probing is cancelled."""
        registering, self.registering = self.registering, None
        if registering is None:
            return
        if not registering.done():
            registering.cancel()
        try:
            registering.result(timeout=WITHDRAW_TIMEOUT)
        except Exception:  # cancelled or failed: nothing was announced (close() still says goodbye)
            return

        async def unregister() -> None:
            await (await self.zeroconf.async_unregister_service(self.info))

        try:
            asyncio.run_coroutine_threadsafe(unregister(), self.loop).result(timeout=WITHDRAW_TIMEOUT)
            log.info("event=zeroconf_withdrawn name=%r", self.name)
        except Exception as exc:  # the exit goes on; the record expires with its TTL
            log.warning("event=zeroconf_withdraw_failed name=%r reason=%r", self.name, str(exc) or type(exc).__name__)

    def close(self) -> None:
        self.withdraw()
        self.zeroconf.close()

    def __enter__(self) -> Announcing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
