"""The SSRF guard at request time.

Names are checked by the resolver aiohttp connects with, so the addresses checked are the
addresses connected to (a name that resolved to a public address at start-up and to
127.0.0.1 now - DNS rebinding - is refused). aiohttp does not consult the resolver for IP
literals; :func:`refusal_for_url` covers those before a request is made.
"""

from __future__ import annotations

import socket
import urllib.parse

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from callbackd.domain.targets import TargetPolicy, parse_address


class TargetRefused(OSError):
    """The request target resolves to an address the policy refuses."""


def refusal_for_url(url: str, policy: TargetPolicy) -> str | None:
    """Why a request to *url* is refused before any DNS lookup (scheme, IP literal)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) URL"
    literal = parse_address(parts.hostname)
    if literal is None:
        return None
    reason = policy.refusal(literal)
    return None if reason is None else f"{literal} is a {reason} address"


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's threaded resolver, then refuses any forbidden address."""

    def __init__(self, policy: TargetPolicy) -> None:
        self._policy = policy
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            address = parse_address(result["host"])
            if address is None:
                raise TargetRefused(f"{host}: resolver returned a non-address")
            reason = self._policy.refusal(address)
            if reason is not None:
                raise TargetRefused(f"{host} resolves to {address}, a {reason} address")
        return results

    async def close(self) -> None:
        await self._inner.close()


def guarded_session(policy: TargetPolicy) -> aiohttp.ClientSession:
    """A client session whose every connection passes the guard (no DNS cache, no env
    proxies, no cookies)."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy), use_dns_cache=False)
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": "callbackd"},
    )
