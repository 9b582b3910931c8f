"""SOCKS5 proxies (-x socks5:// and socks5h://): the handshake, done by python-socks on a socket
of its own that either backend then takes over, and the one table from its exceptions to
afetch's. Imported only when a SOCKS5 proxy is in use (python-socks is the `socks` extra).

python-socks connects to the proxy itself (its API takes an address, not a connected socket),
so afetch resolves the proxy's name (--resolve and --resolver apply, as for any name) and hands
it one address at a time, as a direct connect tries them. With socks5 the proxy is sent the
target's address, resolved here like any target's; with socks5h, the target's name, for the
proxy to resolve. The caller's connect deadline covers the TCP connect, the handshake and the
target's TLS after it; python-socks's own timeout is given the same length, started later: a
backstop that fires only should the caller's not have.

Who failed (RFC 1928, section 6): a reply saying the network or host is unreachable, the
connection was refused or the TTL expired is the target's failure as the proxy saw it, and is
recorded as a direct connect's would be (phase connect: --retries and --scheme auto treat it
so); any other failure is the proxy's (phase proxy, the message naming it).
"""

from __future__ import annotations

import os
import socket

from python_socks import ProxyConnectionError, ProxyTimeoutError, ProxyType
from python_socks import ProxyError as SOCKSFailure
from python_socks.async_.asyncio import Proxy as SOCKSClient

from . import verbose
from .errors import (
    ConnectError,
    ConnectionRefused,
    FetchError,
    FetchTimeout,
    Phase,
    ProtocolError,
    ProxyError,
    map_os_error,
)
from .models import Trace
from .proxy import Proxy, blame_proxy
from .resolve import Address

# A failed reply's REP code -> afetch's kind, phase and the code's meaning. Phase proxy: the
# proxy could not or would not open the tunnel; phase connect: it tried, and the target did
# not take the connection. A code not listed here is garbage: a handshake failure.
SOCKS_REPLIES: dict[int, tuple[type[FetchError], Phase, str]] = {
    0x01: (ProxyError, "proxy", "general SOCKS server failure"),
    0x02: (ProxyError, "proxy", "connection not allowed by ruleset"),
    0x03: (ConnectError, "connect", "network unreachable"),
    0x04: (ConnectError, "connect", "host unreachable"),
    0x05: (ConnectionRefused, "connect", "connection refused"),
    0x06: (ConnectError, "connect", "TTL expired"),
    0x07: (ProxyError, "proxy", "command not supported"),
    0x08: (ProxyError, "proxy", "address type not supported"),
}


def map_socks_error(exc: BaseException, proxy: Proxy, timeout: float | None) -> FetchError:
    """The FetchError for an exception python-socks raised (or let through) connecting through
    `proxy`: the proxy's, with phase proxy and a message naming it, unless its reply blamed the
    target (SOCKS_REPLIES). Anything else is a bug here, an internal-error."""
    if isinstance(exc, ProxyTimeoutError):  # its backstop: `timeout`, or its own default
        within = "in time" if timeout is None else f"within {timeout:g} s"
        return FetchTimeout(f"proxy not done {within}", "proxy")
    if isinstance(exc, ProxyConnectionError):
        # The TCP connect to the proxy failed. Its errno is the connect's, its text
        # python-socks's own: rebuilt, it reads as any failed connect ("connection refused").
        cause = OSError(exc.errno, os.strerror(exc.errno)) if exc.errno else exc
        return blame_proxy(map_os_error(cause, "connect"), proxy)
    if isinstance(exc, SOCKSFailure):
        code = exc.error_code
        if code is not None and code in SOCKS_REPLIES:
            kind, phase, reason = SOCKS_REPLIES[code]
            if phase == "proxy":
                detail = f"SOCKS5 reply {int(code):#04x}, {reason}"
                return kind(f"proxy {proxy.name} refused the tunnel: {detail}", phase)
            return kind(f"{reason} (as reported by SOCKS5 proxy {proxy.name})", phase)
        # No reply code: authentication refused, a reply that is not SOCKS5, a close midway.
        text = str(exc).strip() or type(exc).__name__
        reason = text[0].lower() + text[1:]
        return ProxyError(f"proxy {proxy.name}: SOCKS5 handshake failed: {reason}", "proxy")
    if isinstance(exc, UnicodeError):
        # python-socks decodes the bound address of a domain-name reply without a guard.
        return ProtocolError(f"proxy {proxy.name}: malformed SOCKS5 reply", "proxy")
    # A reset or close under the handshake: the proxy's connection, failing as any can (mapped
    # with another phase first, or blame_proxy would take it as blamed already).
    return blame_proxy(map_os_error(exc, "connect"), proxy)


async def open_tunnel(
    proxy: Proxy,
    addresses: list[Address],
    host: str,
    port: int,
    trace: Trace,
    timeout: float | None,
) -> socket.socket:
    """A socket through `proxy` to host:port (`host` a name for socks5h, an address for socks5):
    each of the proxy's addresses tried in turn, a refused or unreachable one moving on to the
    next, then the SOCKS5 handshake; python-socks's backstop `timeout` (None: its default) for
    each. Raises FetchError (map_socks_error)."""
    user, password = proxy.credentials or (None, None)
    failure: ProxyConnectionError | None = None
    for _family, ip in addresses:
        trace.host_ip = ip
        verbose.trying(trace, ip, proxy.port)
        verbose.socks_connect(trace, host, port, proxy.remote_dns)
        client = SOCKSClient(
            ProxyType.SOCKS5, ip, proxy.port, username=user, password=password, rdns=True
        )
        try:
            sock = await client.connect(host, port, timeout=timeout)
        except ProxyConnectionError as exc:
            failure = exc
            continue
        except (SOCKSFailure, ProxyTimeoutError, UnicodeError, OSError, EOFError) as exc:
            raise map_socks_error(exc, proxy, timeout) from exc
        verbose.socks_granted(trace, ip, proxy.port)
        return sock
    assert failure is not None  # addresses is never empty
    raise map_socks_error(failure, proxy, timeout) from failure
