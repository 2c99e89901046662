"""Outbound calls that never reach private addresses (SSRF guard), for webhook deliveries.

A destination is an absolute http(s) URL. It passes when its port is 80 or 443 and every address its
host resolves to is public unicast: not loopback, private (RFC 1918, unique local), link-local,
CGNAT (100.64/10), documentation, benchmarking, reserved, multicast, unspecified or broadcast, and no
IPv4 address embedded in an IPv6 one (v4-mapped, 6to4, NAT64) that is any of those. The operator's
allowlist (`WEBHOOK_ALLOWED_HOSTS`, e.g. `127.0.0.1:9000,hooks.internal`) names destinations that pass
anyway: `host:port` that port, a bare `host` ports 80 and 443, whatever its addresses. Entries match the
URL's host as written (a name that resolves to an allowlisted address is not that address).

Two checks: `check_url` when a URL is accepted (no DNS: literal addresses in every spelling that the
resolver accepts, `localhost` names, ports), and `resolve` just before each connection (DNS may have
changed). `connect` then opens the connection to one of the checked addresses itself, so nothing
resolves the name a second time between the check and the connection (DNS rebinding); TLS still
verifies the certificate for the name and sends it as SNI, and the caller sends it as the Host header.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
ALLOWED_PORTS = frozenset(DEFAULT_PORTS.values())
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4_BLOCKED = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT (shared address space)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local (cloud metadata services)
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
    )
)
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_V6_BLOCKED = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments (Teredo, ORCHID, …)
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4 (only through its embedded IPv4 address, checked first)
        "3fff::/20",  # documentation
    )
)
_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class Refused(ValueError):
    """A destination the guard does not let a call reach; the message names the rule, not the URL."""


class Unresolvable(Refused):
    """The host has no address now (DNS down, or no such name): worth another try later."""


@dataclass(frozen=True)
class Target:
    """A parsed destination: what to resolve, where to connect, what to send as Host and request line."""

    scheme: str
    host: str  # ASCII (IDNA), lower case, without brackets or trailing dot
    port: int
    path: str  # the request target: path and query

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == DEFAULT_PORTS[self.scheme] else f"{name}:{self.port}"


def parse_target(url: str) -> Target:
    """The URL's parts, or Refused: absolute http(s), no credentials, printable ASCII, a valid port."""
    if any(not 0x20 < ord(c) < 0x7F for c in url):
        raise Refused("must be printable ASCII without spaces (percent-encode other characters)")
    try:
        parts = urlsplit(url)
        hostname, port = parts.hostname, parts.port
    except ValueError as exc:  # unbalanced brackets, a port out of range or not a number
        raise Refused("is not a valid URL") from exc
    if parts.scheme not in DEFAULT_PORTS or not hostname:
        raise Refused("must be an absolute http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise Refused("must not carry credentials (the body is signed instead)")
    if port == 0:
        raise Refused("is not a valid URL")
    port = port or DEFAULT_PORTS[parts.scheme]
    host = _normal_host(hostname)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port, path)


def _normal_host(host: str) -> str:
    host = host.strip("[]").rstrip(".").lower()
    if not host or "%" in host:  # an IPv6 zone id names an interface: never a public destination
        raise Refused("has no usable host")
    return host


def parse_allowlist(text: str) -> frozenset[tuple[str, int | None]]:
    """`WEBHOOK_ALLOWED_HOSTS`: comma-separated `host`, `host:port`, `[v6]` or `[v6]:port` entries."""
    entries: set[tuple[str, int | None]] = set()
    for raw in (part.strip() for part in text.split(",")):
        if raw:
            entries.add(_allow_entry(raw))
    return frozenset(entries)


def _allow_entry(raw: str) -> tuple[str, int | None]:
    host, digits = raw, ""
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"WEBHOOK_ALLOWED_HOSTS: bad entry {raw!r}")
        digits = rest[1:]
    elif raw.count(":") == 1:
        host, _, digits = raw.partition(":")
    port = int(digits) if digits.isdigit() else None
    if (digits and port is None) or (port is not None and not 0 < port < 65536):
        raise ValueError(f"WEBHOOK_ALLOWED_HOSTS: bad port in {raw!r}")
    try:
        return _canonical(_normal_host(host)), port
    except Refused as exc:
        raise ValueError(f"WEBHOOK_ALLOWED_HOSTS: bad host in {raw!r}") from exc


def _canonical(host: str) -> str:
    """An IP literal in its compressed form (so `0:0::1` matches `::1`), a name unchanged."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def allowlisted(target: Target, allowlist: Iterable[tuple[str, int | None]]) -> bool:
    """True when an entry names the target's host and its port (a bare host: ports 80 and 443)."""
    host = _canonical(target.host)
    return any(
        h == host and (target.port == p if p is not None else target.port in ALLOWED_PORTS)
        for h, p in allowlist
    )


def is_public(address: IPAddress) -> bool:
    """True for a public unicast address (an embedded IPv4 address decides for v4-mapped, 6to4, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_v4(address)
        if embedded is not None:
            return is_public(embedded)
        return (
            address in _V6_GLOBAL_UNICAST
            and address.is_global
            and not any(address in net for net in _V6_BLOCKED)
        )
    return address.is_global and not address.is_multicast and not any(address in n for n in _V4_BLOCKED)


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address in _V4_MAPPED:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def numeric_address(host: str) -> IPAddress | None:
    """The address a host written as a number stands for, in every form the C resolver accepts
    (`127.1`, `2130706433`, `0x7f.1`, `0177.0.0.1`, `[::ffff:7f00:1]`), without any DNS query."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return ipaddress.ip_address(str(infos[0][4][0]).split("%")[0]) if infos else None


def _is_localhost_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")  # RFC 6761: always loopback


def check_url(url: str, allowlist: Iterable[tuple[str, int | None]] = ()) -> Target:
    """The acceptance check (no DNS): Refused for a bad URL, a port other than 80/443, a literal
    non-public address or a `localhost` name, unless the allowlist names the destination."""
    target = parse_target(url)
    if not allowlisted(target, allowlist):
        _check_unlisted(target)
    return target


def _check_port(target: Target) -> None:
    if target.port not in ALLOWED_PORTS:
        raise Refused("must use port 80 or 443 (others only when WEBHOOK_ALLOWED_HOSTS lists them)")


def _check_unlisted(target: Target) -> None:
    _check_port(target)
    address = numeric_address(target.host)
    if _is_localhost_name(target.host) or (address is not None and not is_public(address)):
        raise Refused("must not point to a loopback, private, link-local or reserved address")


def resolve(target: Target, allowlist: Iterable[tuple[str, int | None]] = ()) -> list[str]:
    """The addresses to connect to, resolved now; Refused unless every one is public (or the target is
    allowlisted). One non-public answer refuses them all: a name must not mix in an internal address."""
    allowed = allowlisted(target, allowlist)
    if not allowed:
        _check_port(target)  # the addresses are checked below, literal or resolved (`localhost` too)
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolvable("the host does not resolve") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise Unresolvable("the host does not resolve")
    if not allowed and not all(is_public(ipaddress.ip_address(a.split("%")[0])) for a in addresses):
        raise Refused("the host resolves to a loopback, private, link-local or reserved address")
    return addresses


_TLS = ssl.create_default_context()  # system CAs (SSL_CERT_FILE / SSL_CERT_DIR to add a hospital CA)


def connect(target: Target, addresses: list[str], timeout: float) -> socket.socket:
    """A connected socket to the first checked address that answers (TLS for https, verified for the
    target's name, which is also the SNI). The name is never resolved here."""
    error: OSError = OSError("no address")
    for address in addresses:
        try:
            sock = socket.create_connection((address, target.port), timeout=timeout)
        except OSError as exc:
            error = exc
            continue
        if target.scheme == "http":
            return sock
        try:
            return _TLS.wrap_socket(sock, server_hostname=target.host)
        except (OSError, ssl.SSLError):
            sock.close()
            raise
    raise error
