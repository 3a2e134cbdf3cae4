"""Where the gateway may connect on a tenant's behalf: webhook destinations are public addresses only.

A callback URL is chosen by the tenant, so without a check the gateway would POST to whatever it
names: the loopback interface (the broker, the metrics port, the gateway itself), the host's
private network, a cloud metadata service (169.254.169.254). The check is made where the
connection is made, on every address the name resolves to, and the connection goes to the very
address that passed (so a name that resolves differently a moment later, DNS rebinding, changes
nothing). TLS still verifies the certificate against the URL's host name.

`AEVATAR_WEBHOOK_ALLOW_PRIVATE=true` lifts the check, for a development setup whose receiver runs
on the same host or network. Proxies from the environment are not used for webhooks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import typing

import httpcore
import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def forbidden_reason(address: Address) -> str | None:
    """Why a webhook may not connect to this address, or None for a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return forbidden_reason(address.ipv4_mapped)
    for name, hit in (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if hit:
            return f"a {name} address"
    if not address.is_global:
        return "not a public address"
    return None


class EgressRefused(httpcore.ConnectError):
    """The destination resolves only to addresses a webhook may not reach."""


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses `forbidden_reason` lets through."""

    def __init__(self, *, allow_private: bool = False, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.allow_private = allow_private
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            found = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        refused: list[str] = []
        for _family, _type, _proto, _name, sockaddr in found:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            reason = None if self.allow_private else forbidden_reason(address)
            if reason is None:
                return await self.inner.connect_tcp(str(address), port, timeout, local_address, socket_options)
            refused.append(f"{address} ({reason})")
        raise EgressRefused(
            f"refused: {host} resolves only to {', '.join(refused) or 'nothing'}; webhook destinations "
            "must be public addresses (AEVATAR_WEBHOOK_ALLOW_PRIVATE=true lifts this for development)"
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("refused: webhooks do not connect to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, on a connection pool that uses `GuardedBackend`."""

    def __init__(self, *, allow_private: bool) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(), network_backend=GuardedBackend(allow_private=allow_private)
        )


def webhook_client(*, allow_private: bool = False) -> httpx.AsyncClient:
    """The HTTP client webhook deliveries use: no redirects, no proxies from the environment, public
    destinations only (unless `allow_private`)."""
    return httpx.AsyncClient(
        transport=_GuardedTransport(allow_private=allow_private), follow_redirects=False, trust_env=False
    )
