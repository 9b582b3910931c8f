"""-v/--verbose: the steps of a request told as curl -v tells them (`*` a step, `>` a line sent,
`<` the status line received), through the Trace's `log`.

Each function returns at once when the trace has no `log` (no -v): the backends call them on
every fetch, and without -v no message is ever built. Server bytes are escaped by the runner's
printer, not here.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

from .http1 import ResponseHead
from .models import Trace


def resolved(trace: Trace, host: str, addresses: Sequence[tuple[int, str]], how: str) -> None:
    """The addresses a name gave; `how`: "resolved", "pinned" (--resolve) or "" (a literal)."""
    if trace.log is not None and how:
        ips = ", ".join(ip for _, ip in addresses)
        trace.log(f"* {host} {how} to {ips}")


def trying(trace: Trace, ip: str, port: int) -> None:
    if trace.log is not None:
        trace.log(f"*   Trying {_address(ip, port)}...")


def connected(trace: Trace, ip: str | None, port: int) -> None:
    if trace.log is not None:
        trace.log(f"* Connected to {_address(ip or '?', port)}")


def tunnel(trace: Trace, request: bytes) -> None:
    """The CONNECT request written to the proxy."""
    sent(trace, request)


def socks_connect(trace: Trace, host: str, port: int, remote_dns: bool) -> None:
    """What a SOCKS5 proxy is asked for, as curl -v says it."""
    if trace.log is not None:
        how = "remotely" if remote_dns else "locally"
        trace.log(f"* SOCKS5 connect to {_address(host, port)} ({how} resolved)")


def socks_granted(trace: Trace, ip: str, port: int) -> None:
    """The proxy's tunnel stands: connected, through it, to the target."""
    if trace.log is not None:
        trace.log("* SOCKS5 request granted")
        connected(trace, ip, port)


def tls(trace: Trace, ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> None:
    """The handshake's outcome: protocol version, cipher, ALPN."""
    if trace.log is None or ssl_object is None:
        return
    cipher = ssl_object.cipher()
    alpn = ssl_object.selected_alpn_protocol()
    text = f"* TLS connection using {ssl_object.version()} / {cipher[0] if cipher else '?'}"
    trace.log(text + (f", ALPN {alpn}" if alpn else ""))


def sent(trace: Trace, request: bytes) -> None:
    """The request head written, line by line."""
    if trace.log is None:
        return
    for line in request.decode("latin-1").split("\r\n")[:-2]:
        trace.log(f"> {line}")
    trace.log("* Request written")


def sent_fields(trace: Trace, line: str, headers: Sequence[tuple[bytes, bytes]]) -> None:
    """The request head as httpcore writes it: its request line and header fields."""
    if trace.log is None:
        return
    trace.log(f"> {line}")
    for name, value in headers:
        trace.log(f"> {name.decode('latin-1')}: {value.decode('latin-1')}")
    trace.log("* Request written")


def answered(trace: Trace, head: ResponseHead) -> None:
    if trace.log is not None:
        trace.log(f"< HTTP/{head.http_version} {head.status_code} {head.reason}".rstrip())


def _address(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
