"""Webhook egress: which addresses a tenant's callback may reach (pure, and on loopback sockets)."""

from __future__ import annotations

import ipaddress

import httpcore
import httpx
import pytest

from gateway.egress import GuardedBackend, forbidden_reason, webhook_client
from tests.gateway.helpers import webhook_receiver


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.8.9.10", "::1", "0.0.0.0", "::",  # loopback, unspecified
        "10.1.2.3", "172.16.0.1", "192.168.1.1", "fd00::1",  # private
        "169.254.169.254", "fe80::1",  # link-local (cloud metadata)
        "100.64.0.1",  # shared address space (carrier NAT)
        "224.0.0.1", "ff02::1",  # multicast
        "240.0.0.1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",  # reserved; IPv4-mapped
    ],
)  # fmt: skip
def test_non_public_addresses_are_forbidden(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None


async def test_the_client_refuses_loopback_by_address_and_by_name_and_allows_it_when_told() -> None:
    async with webhook_receiver() as (url, received):
        async with webhook_client() as http:
            for target in (url, url.replace("127.0.0.1", "localhost")):
                with pytest.raises(httpx.ConnectError, match=r"refused: .* must be public addresses"):
                    await http.post(target, content=b"{}")
        assert received == []
        async with webhook_client(allow_private=True) as http:
            response = await http.post(url, content=b"{}")
        assert response.status_code == 204 and len(received) == 1


async def test_unix_sockets_are_refused() -> None:
    with pytest.raises(httpcore.ConnectError, match="unix"):
        await GuardedBackend().connect_unix_socket("/run/docker.sock")
