"""Where a webhook may be sent. At creation a URL is checked by its shape (http/https, a host, no
user:password@); at send time its host is resolved, every address it resolves to is checked
against the ranges a tenant must not reach through us (loopback, private, link-local and cloud
metadata, CGNAT, multicast, reserved, unspecified; IPv4-mapped IPv6 unwrapped), and the
connection is pinned to the checked address, so a second resolution (DNS rebinding) can't swap
it. Private destinations are allowed only with ADAPT_WEBHOOK_ALLOW_PRIVATE in single-user mode
(auth off): with keys on, a tenant could otherwise scan the server's network."""
import ipaddress
import socket
import threading
import time
from urllib.parse import urlsplit

import httpcore
import httpx

from app.config import Settings

CGNAT = ipaddress.ip_network("100.64.0.0/10")
METADATA = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fd00:ec2::/64"))


class Refused(Exception):
    """The destination is not one a webhook may reach (the reason stays in our logs)."""


class DeadlineExceeded(httpcore.TimeoutException):
    """The whole request ran past its budget."""


def check_shape(url: str) -> str:
    """Create-time check: an absolute http(s) URL with a host and no credentials."""
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must name a host, e.g. https://example.com/hooks/adapt")
    if "@" in parts.netloc:
        raise ValueError("must not contain a user name or password (user:password@host)")
    return url


def allow_private(settings: Settings) -> bool:
    """ADAPT_WEBHOOK_ALLOW_PRIVATE counts only in single-user mode (auth off)."""
    return settings.webhook_allow_private and not settings.auth_enabled


def forbidden(address: str) -> bool:
    """Whether an address is one a webhook must not reach."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified or not ip.is_global
            or (ip.version == 4 and ip in CGNAT) or any(ip in net for net in METADATA
                                                         if net.version == ip.version))


def _getaddrinfo(host: str, port: int, timeout: float) -> list[str]:
    """The host's addresses, resolved in a helper thread so a hung resolver costs `timeout`."""
    out: dict = {}

    def run():
        try:
            out["ok"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            out["err"] = exc

    t = threading.Thread(target=run, name="adapt-webhook-resolve", daemon=True)
    t.start()
    t.join(max(timeout, 0.0))
    if "ok" in out:
        return list(dict.fromkeys(info[4][0] for info in out["ok"]))
    if "err" in out:
        raise httpx.ConnectError(f"cannot resolve {host}")
    raise httpx.TimeoutException(f"resolving {host} took too long")


def resolve(url: str, settings: Settings, timeout: float) -> str:
    """Send-time check: the one address to connect to, or Refused."""
    try:
        check_shape(url)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    parts = urlsplit(url)
    host = parts.hostname
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    addresses = _getaddrinfo(host, port, timeout)
    if not addresses:
        raise httpx.ConnectError(f"cannot resolve {host}")
    if not allow_private(settings):
        bad = [a for a in addresses if forbidden(a)]
        if bad:
            raise Refused(f"{host} resolves to {bad[0]}, a private or reserved address")
    return addresses[0]


class _DeadlineStream(httpcore.NetworkStream):
    """A stream whose every read and write waits at most until the request's deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float):
        self.stream, self.deadline = stream, deadline

    def _left(self, timeout: float | None) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("the webhook's total time budget ran out")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, self._left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, self._left(timeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        return _DeadlineStream(self.stream.start_tls(ssl_context, server_hostname,
                                                     self._left(timeout)), self.deadline)

    def get_extra_info(self, info: str):
        return self.stream.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to the checked address whatever host httpcore asks for (TLS SNI and the Host
    header stay the URL's host name), and bounds all I/O by one deadline."""

    def __init__(self, address: str, deadline: float):
        self.address, self.deadline = address, deadline
        self.backend = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("the webhook's total time budget ran out")
        stream = self.backend.connect_tcp(self.address, port,
                                          left if timeout is None else min(timeout, left),
                                          local_address, socket_options)
        return _DeadlineStream(stream, self.deadline)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise Refused("unix sockets are not webhook destinations")


class PinnedTransport(httpx.HTTPTransport):
    """httpx's transport on a pool whose connections go to one checked address."""

    def __init__(self, address: str, deadline: float):
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(),
                                             max_connections=1,
                                             network_backend=_PinnedBackend(address, deadline))


def client(url: str, settings: Settings, timeout_s: float) -> httpx.Client:
    """A client for one send to `url`: resolved, checked and pinned now; every step of the
    request (resolution included) within timeout_s seconds in all."""
    deadline = time.monotonic() + timeout_s
    address = resolve(url, settings, timeout_s)
    return httpx.Client(transport=PinnedTransport(address, deadline), trust_env=False,
                        timeout=timeout_s, follow_redirects=False)
