"""HTTP proxies (-x/--proxy, --proxy-env): which proxy a target goes through, the bytes of the
CONNECT handshake and of absolute-form requests, and errors that blame the proxy. No I/O: the
backends' connect steps do that, each over its own connections.

Through a proxy an https target gets a tunnel (``CONNECT host:port``, then TLS with the
target's name inside it, as curl does); an http target is asked in absolute form (``GET
http://host/path``) of the proxy itself. What fails before the tunnel stands or the proxy
answers (the proxy's name, its port, its CONNECT answer) has phase ``proxy`` and a message
naming the proxy; what fails after is the target's, as without a proxy.
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

# curl's default proxy port, when the proxy URL names none.
DEFAULT_PROXY_PORT = 1080
# The tls record's capture_error after a failed verification through a proxy: the certificate
# capture (an unverified handshake to the same address) would need a tunnel of its own.
NOT_CAPTURED_THROUGH_PROXY = "certificate not captured: through a proxy"


@dataclass(frozen=True, slots=True)
class Proxy:
    """One HTTP proxy: where it listens, and the Proxy-Authorization its URL's user:pass make."""

    host: str
    port: int
    authorization: str | None = None

    @property
    def name(self) -> str:
        """host:port, as error messages name the proxy."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_proxy(url: str) -> Proxy:
    """An -x value: ``http://[user:pass@]host[:port]`` or ``host[:port]`` (http assumed). Raises
    ConfigError naming the value for any other scheme or a URL without a host."""
    text = url if "://" in url else f"http://{url}"
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigError(f"invalid proxy {url!r}: bad port") from None
    if parts.scheme.lower() != "http":
        raise ConfigError(
            f"invalid proxy {url!r}: only http:// proxies are supported (not {parts.scheme}://)"
        )
    if not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"invalid proxy {url!r}: expected http://HOST[:PORT]")
    authorization = None
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        authorization = f"Basic {token}"
    return Proxy(parts.hostname, port or DEFAULT_PROXY_PORT, authorization)


class Proxies:
    """Which proxy each target goes through: -x for all of them, or with --proxy-env the
    environment's HTTPS_PROXY / HTTP_PROXY by the target's scheme, minus NO_PROXY's hosts."""

    def __init__(self, proxy: str | None, from_env: bool, env: Mapping[str, str] | None = None):
        self._all = parse_proxy(proxy) if proxy else None
        self._by_scheme: dict[str, Proxy] = {}
        self._bypass: tuple[str, ...] = ()
        if from_env and self._all is None:
            env = os.environ if env is None else env
            for scheme in ("http", "https"):
                value = _getenv(env, f"{scheme}_proxy")
                if value:
                    self._by_scheme[scheme] = parse_proxy(value)
            bypass = _getenv(env, "no_proxy") or ""
            self._bypass = tuple(h.strip().lower().lstrip(".") for h in bypass.split(",") if h)

    def __bool__(self) -> bool:
        return self._all is not None or bool(self._by_scheme)

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
