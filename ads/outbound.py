"""Outbound HTTP for webhooks and Slack, and the rules of where it may go.

- A URL must be https (http only with WEBHOOK_ALLOW_HTTP) and its host must resolve to
  public addresses only (WEBHOOK_ALLOW_PRIVATE lifts this): no loopback, private,
  link-local, multicast, reserved or unspecified address, so an endpoint cannot make
  our workers reach the cloud's metadata service or the inside network (server-side
  request forgery). The admin checks it when an endpoint is saved; `post` checks it
  again at each request.
- A request resolves the name once, checks every address, and connects to a checked
  one: a DNS answer that changes between the check and the connection (rebinding)
  cannot point it elsewhere. TLS (SNI and the certificate check) and the Host header
  keep the name.
- Redirects are never followed: a 3xx is an answer like any other non-2xx.
- One deadline (WEBHOOK_TIMEOUT) bounds connecting, sending and the whole answer, so a
  receiver that accepts and never answers, or answers a byte at a time, costs at most
  that (name resolution, by the system's resolver, is bounded by its own timeouts).
"""

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# What a URL is refused for: the end of a sentence that starts with the field's name.
URL_SCHEME = "must start with https://{hint}"
HTTP_HINT = " (plain http:// is allowed only with the setting WEBHOOK_ALLOW_HTTP)"
URL_NO_HOST = "has no host name"
URL_BAD_HOST = "has a host name that cannot be written in DNS ({host})"
URL_CREDENTIALS = "must not carry a user name or password before the host"
URL_UNRESOLVED = "names {host}, which does not resolve ({reason})"
URL_ADDRESS = (
    "names {host}, which resolves to {address}, a {kind} address: only public addresses "
    "are allowed (the setting WEBHOOK_ALLOW_PRIVATE allows others)"
)
URL_LITERAL = (
    "goes to {address}, a {kind} address: only public addresses are allowed (the setting "
    "WEBHOOK_ALLOW_PRIVATE allows others)"
)
ANSWER_EXCERPT = 200  # bytes of a failed answer's body kept to say why


class UrlRefused(ValueError):
    """We do not send to this URL; the text says why, as the end of a sentence
    starting with "The URL"."""


class NoAnswer(OSError):
    """The request failed before a whole answer came back; the text says how."""


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: where to connect (`addresses`, every one checked) and what to ask."""

    scheme: str
    host: str
    port: int
    path: str  # the request target: path and query
    addresses: tuple[Address, ...]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    location: str  # the Location header of a redirect, or ""
    retry_after: int | None  # seconds, from a 429 or 503's Retry-After
    excerpt: str  # the start of a failed answer's body, printable


def address_kind(address: Address) -> str | None:
    """Why webhooks may not go to `address` ("loopback", "private", ...), or None for
    a public address. An IPv6 address that carries an IPv4 one (mapped, 6to4, Teredo,
    NAT64) is judged by the IPv4 address it reaches."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is None and address in ipaddress.IPv6Network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_kind(embedded)
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("non-public", not address.is_global),
    )
    return next((kind for kind, applies in checks if applies), None)


def check_url(url: str) -> Target:
    """The target of `url` once it passes the rules: scheme, host, and every address
    its host resolves to now. Raises UrlRefused naming the first rule it breaks."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and settings.WEBHOOK_ALLOW_HTTP):
        raise UrlRefused(URL_SCHEME.format(hint=HTTP_HINT if scheme == "http" else ""))
    if parts.username is not None or parts.password is not None:
        raise UrlRefused(URL_CREDENTIALS)
    host = parts.hostname
    if not host:
        raise UrlRefused(URL_NO_HOST)
    try:
        host = host.encode("idna").decode("ascii")  # as DNS and the Host header spell it
    except UnicodeError:
        raise UrlRefused(URL_BAD_HOST.format(host=host)) from None
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as error:  # a port out of range or not a number
        raise UrlRefused(f"has {error}") from None
    addresses = resolve(host, port)
    if not settings.WEBHOOK_ALLOW_PRIVATE:
        for address in addresses:
            if kind := address_kind(address):
                text = URL_ADDRESS if len(addresses) > 1 or _is_name(host) else URL_LITERAL
                raise UrlRefused(text.format(host=host, address=address, kind=kind))
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return Target(scheme, host, port, path, addresses)


def _is_name(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def resolve(host: str, port: int) -> tuple[Address, ...]:
    """Every address `host` resolves to now (an address literal is itself)."""
    try:
        return (ipaddress.ip_address(host),)
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise UrlRefused(URL_UNRESOLVED.format(host=host, reason=reason)) from None
    addresses: dict[Address, None] = {}
    for *_, sockaddr in found:
        addresses[ipaddress.ip_address(str(sockaddr[0]).split("%")[0])] = None
    if not addresses:
        raise UrlRefused(URL_UNRESOLVED.format(host=host, reason="no address"))
    return tuple(addresses)


def post(url: str, body: bytes, headers: Mapping[str, str], *, timeout: float) -> Answer:
    """POST `body` to `url` and return the answer, whatever its status (redirects are
    not followed). Raises UrlRefused if the URL breaks the rules now, NoAnswer if no
    whole answer came back within `timeout` seconds of the start."""
    deadline = Deadline(timeout)
    try:
        target = check_url(url)
        return _exchange(target, body, headers, deadline)
    finally:
        deadline.cancel()


def _exchange(
    target: Target, body: bytes, headers: Mapping[str, str], deadline: "Deadline"
) -> Answer:
    connection = _connect(target, deadline)
    try:
        connection.request(
            "POST", target.path, body=body, headers={**headers, "Connection": "close"}
        )
        response = connection.getresponse()
        failed = not 200 <= response.status < 300
        excerpt = response.read(ANSWER_EXCERPT) if failed else b""
        retry_after = response.getheader("Retry-After", "")
        return Answer(
            status=response.status,
            location=response.getheader("Location", "") or "",
            retry_after=int(retry_after) if retry_after.strip().isdigit() else None,
            excerpt=printable(excerpt.decode("utf-8", "replace")),
        )
    except (OSError, http.client.HTTPException) as error:
        raise deadline.explain(error) from None
    finally:
        connection.close()


def _connect(target: Target, deadline: "Deadline") -> http.client.HTTPConnection:
    """A connection to the first of the target's checked addresses that accepts one."""
    context = ssl.create_default_context() if target.scheme == "https" else None
    failure: OSError | None = None
    for address in target.addresses:
        connection = PinnedConnection(target.host, target.port, address, context, deadline)
        try:
            connection.connect()
        except (OSError, ssl.SSLError) as error:
            connection.close()
            failure = deadline.explain(error)
            if deadline.expired:
                raise failure from None
            continue  # the next address, if any
        return connection
    raise failure or NoAnswer("no address to connect to")


class PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to one given address, speaking to the URL's host name:
    the Host header, SNI and the certificate check use the name, the socket goes to the
    address that was checked."""

    def __init__(
        self,
        host: str,
        port: int,
        address: Address,
        context: ssl.SSLContext | None,
        deadline: "Deadline",
    ) -> None:
        super().__init__(host, port, timeout=max(deadline.remaining(), 0.001))
        self.address = address
        self.context = context
        self.deadline = deadline

    def connect(self) -> None:
        family = socket.AF_INET6 if self.address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        self.deadline.watch(sock)
        sock.settimeout(self.deadline.remaining())
        sock.connect((str(self.address), self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.context is not None:
            sock = self.context.wrap_socket(
                sock, server_hostname=self.host, do_handshake_on_connect=False
            )
            self.deadline.watch(sock)
            sock.settimeout(self.deadline.remaining())
            sock.do_handshake()
        self.sock = sock


class Deadline:
    """Seconds for a whole request: when they run out, the sockets watched are shut
    down, so a read blocked on a receiver that never answers returns at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        left = self.ends - time.monotonic()
        if left <= 0:
            raise NoAnswer(self.timed_out)
        return left

    @property
    def timed_out(self) -> str:
        return f"no answer within {self.seconds:g} s"

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def explain(self, error: BaseException) -> OSError:
        """What went wrong, as a person reads it: a NoAnswer."""
        if isinstance(error, NoAnswer):
            return error
        if self.expired or isinstance(error, TimeoutError):
            return NoAnswer(self.timed_out)
        return NoAnswer(describe_error(error))


def _shut(sock: socket.socket) -> None:
    with suppress(OSError):  # not connected yet, or closed: nothing to wake
        sock.shutdown(socket.SHUT_RDWR)


def describe_error(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted ({error.verify_message})"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed ({error.reason or error})"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the connection was closed without an answer"
    if isinstance(error, ConnectionResetError):
        return "the connection was reset"
    if isinstance(error, http.client.HTTPException):
        return f"not an HTTP answer ({type(error).__name__})"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return type(error).__name__


def printable(text: str) -> str:
    """One line of printable text (a receiver's words, shown to people)."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def origin(url: str) -> str:
    """scheme://host[:port] of a URL, for logs, lists and mails: never its path or query,
    which for Slack (and many receivers) hold a token."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"
