"""The key-less local mode: which requests may be served without an API key, and the guards they pass.

Key-less serving is decided per request from the sockets themselves, never from a setting: the request
must have come in over a TCP socket whose *listening* socket in this process is bound to a loopback
address (127.0.0.0/8 or ::1; a wildcard 0.0.0.0 or :: is not). Even then a web page in the operator's
browser could reach it (a cross-site form, or DNS rebinding of an attacker's name to 127.0.0.1), so a
key-less request must also:

- name this service in `Host`: `localhost`, a loopback address (`127.0.0.1`, `[::1]`) and the socket's
  port (else 421 Misdirected Request);
- not come from another site: an `Origin` that is not `http://<loopback>:<port>` (also `null`) or
  `Sec-Fetch-Site: cross-site` is a 403;
- not be relayed by a proxy: `Forwarded`, `X-Forwarded-*` or `X-Real-IP` is a 403 (a proxy makes a
  remote caller look local).

Requests that carry an API key are not subject to these guards (a page cannot know the key).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import Scope

from synthaudit.app.core.config import is_loopback
from synthaudit.app.problems import TYPE_PREFIX

MISDIRECTED_TYPE = TYPE_PREFIX + "misdirected-request"
CROSS_SITE_TYPE = TYPE_PREFIX + "cross-site-request"
PROXIED_TYPE = TYPE_PREFIX + "proxied-request"
PROXY_HEADERS = ("forwarded", "x-real-ip")
PROXY_PREFIX = "x-forwarded-"

_listeners: dict[int, tuple[str, ...]] = {}  # port -> hosts of this process's listening sockets


def listening_hosts(port: int) -> tuple[str, ...]:
    """The addresses this process's listening TCP sockets on `port` are bound to (Linux: read from the
    process's own file descriptors; cached, a listener does not move)."""
    if port not in _listeners:
        found = tuple(_scan_listeners(port))
        if not found:
            return ()  # not listening yet (or not over TCP): ask again next time
        _listeners[port] = found
    return _listeners[port]


def _scan_listeners(port: int) -> Iterable[str]:
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return
    for name in fds:
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            copy = os.dup(int(name))
            try:
                sock = socket.socket(fileno=copy)
            except OSError:
                os.close(copy)  # not a socket after all (the descriptor was reused meanwhile)
                raise
            with sock:
                if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
                    continue
                if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    continue
                host, bound_port = sock.getsockname()[:2]
        except (OSError, ValueError):
            continue
        if bound_port == port:
            yield host


def served_over_loopback(scope: Scope) -> bool:
    """True when the request came in on a loopback address of a socket that listens on loopback only.
    (The peer is then on this machine; scope["client"] is not looked at: uvicorn rewrites it from
    X-Forwarded-For, which the guards refuse with a clearer answer.)"""
    server = scope.get("server")
    if not server or server[1] is None or not is_loopback(str(server[0])):
        return False
    hosts = listening_hosts(int(server[1]))
    return bool(hosts) and all(is_loopback(h) for h in hosts)


def refusal(scope: Scope, headers: Headers) -> tuple[int, str, str] | None:
    """(status, problem type, detail) when a key-less request fails a guard; None when it passes."""
    port = int(scope["server"][1])
    here = f"http://127.0.0.1:{port}"
    if any(k in PROXY_HEADERS or k.startswith(PROXY_PREFIX) for k in headers.keys()):
        return (
            403,
            PROXIED_TYPE,
            "a request relayed by a proxy (Forwarded, X-Forwarded-* or X-Real-IP) is refused without an "
            "API key: the key-less local mode serves this machine only. Behind a proxy, require keys "
            "(AUTH_REQUIRED=true) and send one.",
        )
    hosts = headers.getlist("host")
    if len(hosts) != 1 or not _names_this_service(hosts[0], port):
        return (
            421,
            MISDIRECTED_TYPE,
            f"this key-less local service answers only requests addressed to localhost, 127.0.0.1 or [::1] "
            f"on port {port} (the Host header named something else: a link to another name, or DNS "
            f"rebinding). Use {here}, or send an API key.",
        )
    origin = headers.get("origin")
    cross_site = headers.get("sec-fetch-site", "").strip().lower() == "cross-site"
    if cross_site or (origin is not None and not _is_this_origin(origin, port)):
        return (
            403,
            CROSS_SITE_TYPE,
            f"a cross-site request is refused without an API key (Origin is not {here}, or "
            "Sec-Fetch-Site: cross-site): a page of another site cannot use the key-less local service. "
            "Send an API key to call it from elsewhere.",
        )
    return None


def _split_authority(authority: str) -> tuple[str, int | None] | None:
    """(host, port) of a bare `host[:port]` or `[v6][:port]`; None for anything else (user info, a path)."""
    try:
        parts = urlsplit(f"//{authority.strip()}")
        if parts.path or parts.query or parts.fragment or "@" in parts.netloc or not parts.hostname:
            return None
        return parts.hostname, parts.port
    except ValueError:
        return None


def _names_this_service(authority: str, port: int) -> bool:
    """`localhost` or a loopback IP literal (never another DNS name, which could be rebound) and our port."""
    split = _split_authority(authority)
    if split is None:
        return False
    host, given = split
    return is_loopback(host) and (given if given is not None else 80) == port


def _is_this_origin(origin: str, port: int) -> bool:
    parts = urlsplit(origin.strip())
    if parts.scheme != "http" or parts.path not in ("", "/") or parts.query or parts.fragment:
        return False
    return _names_this_service(parts.netloc, port)
