"""Which `fhirServer` URLs the service may read: URL normalisation and the allow-list.

A prefix test on raw strings is fooled by `/../`, `%2e%2e`, upper-case schemes and hosts, default ports,
`user@host` and backslashes; here both sides are normalised first (RFC 3986 section 6.2.2) and compared
segment by segment. Loopback hosts are allowed only where the caller says so (demo mode) or where the
allow-list names them explicitly.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import socket
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["AllowList", "NormalisedUrl", "UrlRefused", "has_control_chars", "is_loopback_host", "normalise"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# C0 controls, DEL, C1 controls, and the Unicode line/paragraph separators: a header or log line splitter.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class UrlRefused(ValueError):
    """The URL cannot be normalised safely (the message says why; it never quotes the URL)."""


def has_control_chars(value: str) -> bool:
    return _CONTROL.search(value) is not None


@dataclass(frozen=True, slots=True)
class NormalisedUrl:
    scheme: str
    host: str
    port: int
    segments: tuple[str, ...]  # path segments, dot segments resolved, percent-decoded, no empty tail

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def under(self, prefix: NormalisedUrl) -> bool:
        return (self.scheme, self.host, self.port) == (prefix.scheme, prefix.host, prefix.port) \
            and self.segments[:len(prefix.segments)] == prefix.segments


def normalise(url: str) -> NormalisedUrl:
    if has_control_chars(url) or "\\" in url:
        raise UrlRefused("URL contains control characters or backslashes")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise UrlRefused("URL cannot be parsed") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise UrlRefused("URL must be http or https")
    if "@" in parts.netloc:
        raise UrlRefused("URL must not carry user information")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UrlRefused("URL has no host")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise UrlRefused("URL host is not a valid host name") from None
    # Decode first, so `%2e%2e` and `%2f` cannot hide a dot segment from the resolution below.
    path = unquote(parts.path)
    if has_control_chars(path) or "\\" in path:
        raise UrlRefused("URL path contains control characters or backslashes")
    resolved = posixpath.normpath("/" + path) if path else "/"
    segments = tuple(s for s in resolved.split("/") if s)
    return NormalisedUrl(scheme, host, port or _DEFAULT_PORTS[scheme], segments)


def is_loopback_host(host: str) -> bool:
    """Loopback, unspecified or link-local: addresses that reach the service's own machine or cloud."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    addr = _ip_of(host)
    if addr is None:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    # Link-local covers the cloud metadata address (169.254.169.254), the classic SSRF target.
    return addr.is_loopback or addr.is_unspecified or addr.is_link_local


_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$")


def _ip_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # What the resolver also reads as IPv4: `2130706433`, `0x7f.1`, `127.1`, `0177.0.0.1` are all 127.0.0.1.
    if _NUMERIC_HOST.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


class AllowList:
    """`prefixes` from configuration; `any_server` is the explicit `*`; `allow_loopback` is demo mode."""

    def __init__(self, prefixes: list[str], *, any_server: bool = False, allow_loopback: bool = False) -> None:
        self.prefixes = [normalise(p) for p in prefixes]
        self.any_server = any_server
        self.allow_loopback = allow_loopback

    @classmethod
    def parse(cls, setting: str, *, allow_loopback: bool) -> AllowList:
        items = [p.strip() for p in setting.split(",") if p.strip()]
        any_server = "*" in items
        return cls([p for p in items if p != "*"], any_server=any_server or not items,
                   allow_loopback=allow_loopback)

    def allows(self, url: str) -> bool:
        try:
            n = normalise(url)
        except UrlRefused:
            return False
        if any(n.under(p) for p in self.prefixes):
            return True  # an operator who lists a loopback server means it
        if not self.any_server:
            return False
        return self.allow_loopback or not is_loopback_host(n.host)
