"""Which requests the servers we start (optuna-dashboard, Visdom) answer: those meant for this machine.

Binding 127.0.0.1 keeps other machines out, but not the user's own browser: a web page can rename its
host to 127.0.0.1 (DNS rebinding) and reach a local server under its own `Host:`, and a cross-site form
can POST to it. So, as the MLflow UI does, a request whose Host is not an allowed name is refused (403),
and so is a write (any method but GET/HEAD/OPTIONS, or a WebSocket) that a page of another origin sent.
Allowed: 127.0.0.1, localhost, ::1 and the --host given; for a wildcard bind (0.0.0.0, ::) also this
machine's names and addresses, which is how other machines reach it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

LOCAL_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARDS = ("0.0.0.0", "::", "")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def allowed_hosts(bind_host: str) -> frozenset[str]:
    names = {*LOCAL_NAMES, bind_host}
    if bind_host in WILDCARDS:
        names |= _this_machine()
    return frozenset(_bare(name) for name in names if name)


def _this_machine() -> set[str]:
    import psutil

    names = {socket.gethostname(), socket.getfqdn()}
    for addresses in psutil.net_if_addrs().values():
        names |= {address.address.split("%")[0] for address in addresses
                  if address.family in (socket.AF_INET, socket.AF_INET6)}
    return names


def _bare(host: str) -> str:
    """A Host header's or URL's name alone: no port, no IPv6 brackets, no trailing dot, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":")[0]
    return host.rstrip(".")


def refusal(method: str, host: str | None, origin: str | None, upgrade: str | None,
            allowed: Iterable[str]) -> str:
    """Why a request is refused ("" when it is not). A request without Host (not a browser's) is let through."""
    if host and _bare(host) not in allowed:
        return f"host {host!r} is not this server's name"
    writes = method.upper() not in SAFE_METHODS or (upgrade or "").lower() == "websocket"
    if writes and origin is not None and _bare(urlsplit(origin).netloc) not in allowed:
        return f"a write from another origin ({origin!r})"
    return ""


def guard_wsgi(app: Callable, allowed: Iterable[str]) -> Callable:
    """A WSGI app that answers 403 to the requests `refusal` names, and passes the others to `app`."""
    allowed = frozenset(allowed)

    def guarded(environ: dict, start_response: Callable):
        reason = refusal(environ.get("REQUEST_METHOD", "GET"), environ.get("HTTP_HOST"), environ.get("HTTP_ORIGIN"),
                         environ.get("HTTP_UPGRADE"), allowed)
        if reason:
            start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"forbidden: {reason}\n".encode()]
        return app(environ, start_response)

    return guarded
