"""Proxies (-x/--proxy, --proxy-env): which proxy a target goes through, the bytes of an HTTP
proxy's CONNECT handshake and of absolute-form requests, and errors that blame the proxy. No
I/O: the backends' connect steps do that, each over its own connections (socks.py holds the
SOCKS5 handshake both share).

Through an HTTP proxy an https target gets a tunnel (``CONNECT host:port``, then TLS with the
target's name inside it, as curl does); an http target is asked in absolute form (``GET
http://host/path``) of the proxy itself. Through a SOCKS5 proxy every target gets a tunnel
(TLS inside it for https) and its request as without a proxy. What fails before the tunnel
stands or the proxy answers (the proxy's name, its port, its CONNECT answer or SOCKS5 reply)
has phase ``proxy`` and a message naming the proxy; what fails after is the target's, as
without a proxy.
"""

from __future__ import annotations

import base64
import os
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from .config import ConfigError
from .errors import FetchError, ProxyError
from .http1 import ResponseHead
from .targets import Target

# curl's default proxy port, when the proxy URL names none (SOCKS's own port, too).
DEFAULT_PROXY_PORT = 1080
# -x schemes. socks5: afetch resolves the target's name and sends the proxy its address;
# socks5h: the proxy is sent the name and resolves it (curl's two spellings).
SCHEMES = ("http", "socks5", "socks5h")
SOCKS_SCHEMES = frozenset({"socks5", "socks5h"})
# RFC 1929: a SOCKS5 user name and password are each 1 to 255 bytes long; python-socks sends
# them ASCII-encoded, and offers username/password authentication only when both are given.
MAX_SOCKS_CREDENTIAL = 255
# The tls record's capture_error after a failed verification through a proxy: the certificate
# capture (an unverified handshake to the same address) would need a tunnel of its own.
NOT_CAPTURED_THROUGH_PROXY = "certificate not captured: through a proxy"


@dataclass(frozen=True, slots=True)
class Proxy:
    """One proxy: where it listens, its scheme, and the credentials its URL's user:pass make
    (an HTTP proxy's Proxy-Authorization; a SOCKS5 proxy's user name and password)."""

    host: str
    port: int
    authorization: str | None = None
    scheme: str = "http"  # one of SCHEMES
    credentials: tuple[str, str] | None = None  # SOCKS5 only

    @property
    def name(self) -> str:
        """host:port, as error messages name the proxy."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def socks(self) -> bool:
        """A SOCKS5 proxy: a tunnel for every target, no absolute-form requests."""
        return self.scheme in SOCKS_SCHEMES

    @property
    def remote_dns(self) -> bool:
        """socks5h: the proxy, not afetch, resolves the target's name."""
        return self.scheme == "socks5h"


def parse_proxy(url: str) -> Proxy:
    """An -x value: ``SCHEME://[user:pass@]host[:port]`` with a scheme of SCHEMES, or
    ``host[:port]`` (http assumed). Raises ConfigError naming the value for any other scheme,
    a URL without a host, or SOCKS5 credentials RFC 1929 cannot carry."""
    text = url if "://" in url else f"http://{url}"
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigError(f"invalid proxy {url!r}: bad port") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigError(
            f"invalid proxy {url!r}: only http://, socks5:// and socks5h:// proxies are"
            f" supported (not {parts.scheme}://)"
        )
    if not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"invalid proxy {url!r}: expected {scheme}://HOST[:PORT]")
    authorization = credentials = None
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        if scheme in SOCKS_SCHEMES:
            credentials = _socks_credentials(url, user, password)
        else:
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            authorization = f"Basic {token}"
    return Proxy(parts.hostname, port or DEFAULT_PROXY_PORT, authorization, scheme, credentials)


def _socks_credentials(url: str, user: str, password: str) -> tuple[str, str]:
    for value in (user, password):
        if not (value.isascii() and 1 <= len(value) <= MAX_SOCKS_CREDENTIAL):
            raise ConfigError(
                f"invalid proxy {url!r}: a SOCKS5 user name and password are each 1 to"
                f" {MAX_SOCKS_CREDENTIAL} ASCII characters"
            )
    return user, password


class Proxies:
    """Which proxy each target goes through: -x for all of them, or with --proxy-env the
    environment's HTTPS_PROXY / http_proxy by the target's scheme (ALL_PROXY for a scheme
    without one), minus NO_PROXY's hosts."""

    def __init__(self, proxy: str | None, from_env: bool, env: Mapping[str, str] | None = None):
        self._all = parse_proxy(proxy) if proxy else None
        self._by_scheme: dict[str, Proxy] = {}
        self._bypass: tuple[str, ...] = ()
        if from_env and self._all is None:
            env = os.environ if env is None else env
            for scheme in ("http", "https"):
                value = _getenv(env, f"{scheme}_proxy") or _getenv(env, "all_proxy")
                if value:
                    self._by_scheme[scheme] = parse_proxy(value)
            bypass = _getenv(env, "no_proxy") or ""
            self._bypass = tuple(h.strip().lower().lstrip(".") for h in bypass.split(",") if h)

    def __bool__(self) -> bool:
        return self._all is not None or bool(self._by_scheme)

    @property
    def socks(self) -> bool:
        """Whether any target may go through a SOCKS5 proxy (which needs python-socks)."""
        proxies = [self._all] if self._all is not None else self._by_scheme.values()
        return any(proxy.socks for proxy in proxies)

    def for_target(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy for a target, or None: straight to it."""
        if self._all is not None:
            return self._all
        proxy = self._by_scheme.get(scheme)
        if proxy is None or self._bypassed(host.lower(), port):
            return None
        return proxy

    def _bypassed(self, host: str, port: int) -> bool:
        """NO_PROXY as curl reads it: `*`, a host, a domain (with or without a leading dot:
        its subdomains too), each optionally with :PORT. IP ranges are not understood."""
        for entry in self._bypass:
            if entry == "*":
                return True
            name, _, entry_port = (
                entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
            )
            if entry_port and entry_port != str(port):
                continue
            if host == name or host.endswith("." + name):
                return True
        return False


def _getenv(env: Mapping[str, str], name: str) -> str | None:
    """The lower-case variable, else the upper-case one (curl reads http_proxy lower-case only,
    for CGI's sake; both are common for the rest)."""
    return env.get(name) or (None if name == "http_proxy" else env.get(name.upper()))


def connect_request(target: Target, proxy: Proxy) -> bytes:
    """The CONNECT request for a tunnel to the target's host:port."""
    lines = [f"CONNECT {target.host_port} HTTP/1.1", f"Host: {target.host_port}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def check_tunnel(head: ResponseHead, proxy: Proxy) -> None:
    """Raise ProxyError unless the CONNECT answer opened the tunnel (a 2xx)."""
    if not 200 <= head.status_code < 300:
        status = f"{head.status_code} {head.reason}".rstrip()
        raise ProxyError(f"proxy {proxy.name} refused the tunnel: {status}", "proxy")


def proxy_authorization(proxy: Proxy) -> list[tuple[str, str]]:
    """The header an absolute-form request to the proxy adds, if its URL had credentials."""
    return [("Proxy-Authorization", proxy.authorization)] if proxy.authorization else []


def blame_proxy(exc: FetchError, proxy: Proxy) -> FetchError:
    """The same kind of error, put on the proxy: phase proxy, its message naming the proxy."""
    if exc.phase == "proxy" or isinstance(exc, ProxyError):
        return exc
    error = type(exc)(f"proxy {proxy.name}: {exc.message}", "proxy")
    error.__cause__ = exc
    return error


@contextmanager
def blamed_on(proxy: Proxy | None) -> Iterator[None]:
    """Re-raise the block's FetchErrors as the proxy's (blame_proxy); without one, as they are."""
    try:
        yield
    except FetchError as exc:
        if proxy is None:
            raise
        raise blame_proxy(exc, proxy) from exc
