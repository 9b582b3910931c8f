"""The Backend interface: one async method that does one request, and aclose()."""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from ..config import Config, load_cafile
from ..http1 import ResponseHead
from ..models import Trace
from ..targets import Target
from ..tls import TLSInfo, failed_verification, observe, prepare

# The capture handshake after a failed verification takes at most this long, and ends this
# long before the fetch's total deadline: the tls-error must not become a timeout for it. A
# server that has just shaken hands does it again in about a millisecond on loopback.
CAPTURE_SECONDS = 2.0
CAPTURE_MARGIN = 0.25


class Backend(ABC):
    """Fetch the response head of one target. Usable as an async context manager.

    `fetch` raises FetchError subclasses (never a foreign exception) and fills in `trace` as it
    goes: the phase it is in, the peer address, timings. The engine owns the total deadline.
    """

    name: str

    def __init__(self, config: Config) -> None:
        self.config = config

    @abstractmethod
    async def fetch(self, target: Target, trace: Trace) -> ResponseHead: ...

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release what the backend holds across fetches (connection pools, resolvers)."""

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


# The TLS contexts made in this process, one for each (verify, --cacert file, ALPN), with the
# stamp of what it was loaded from. Loading the system's CA store takes about 30 ms of CPU (31
# ms here): a backend loads it once, but a --workers or --cluster worker builds a backend for
# every chunk it runs, and so loaded it again per chunk of 1 000 targets (the httpx backend
# even for plain http ones, which it loads up front).
_CONTEXTS: dict[tuple[bool, str | None, tuple[str, ...]], tuple[object, ssl.SSLContext]] = {}
# What ssl.create_default_context reads from the environment: a change loads again.
_CONTEXT_ENVIRONMENT = ("SSL_CERT_FILE", "SSL_CERT_DIR", "SSLKEYLOGFILE")


def make_ssl_context(
    verify: bool, cafile: str | None, alpn: Sequence[str], *, shared: bool = True
) -> ssl.SSLContext:
    """Verification on unless -k; --cacert adds a trust anchor file to the system store; `alpn`
    the protocols offered. `shared`: one context per process for the same arguments, made
    again when the --cacert file changed on disk (its inode, size or mtime) or the environment
    ssl reads did; never to be changed by its users, who may be on several threads at once.
    Not shared: a context its user changes (httpcore sets the ALPN of its own on each
    connection). The system's store itself is read once per process, as the CA bundle of
    most clients is."""
    key = (verify, cafile, tuple(alpn))
    stamp = (_file_stamp(cafile), tuple(os.environ.get(name) for name in _CONTEXT_ENVIRONMENT))
    made = _CONTEXTS.get(key) if shared else None
    if made is not None and made[0] == stamp:
        return made[1]
    context = ssl.create_default_context()
    if cafile:
        load_cafile(context, cafile)  # ConfigError naming the file (Request checked it already)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(list(alpn))
    if shared:
        _CONTEXTS[key] = (stamp, context)
    return context


def _file_stamp(path: str | None) -> tuple[int, int, int] | None:
    if not path:
        return None
    try:
        status = os.stat(path)
    except OSError:
        return None  # load_cafile says what is wrong with it
    return status.st_ino, status.st_size, status.st_mtime_ns


class TLSReporter:
    """How a backend fills in `trace.tls` (absent with --no-tls-info): the facts of a completed
    handshake, or after a failed verification its reason plus, from one more handshake that
    does not verify, the certificate that was served (Python < 3.13 offers no other way to it).
    The same on both backends, so they report the same server alike."""

    def __init__(self, config: Config, alpn: Sequence[str]) -> None:
        request = config.request
        self.verify = request.verify
        self.cafile = request.cafile
        self.total = config.timeouts.total
        self.connect = config.timeouts.connect
        # Negotiates as make_ssl_context's does (same defaults), without loading a CA store.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(list(alpn))
        self._capture_context = context

    def prepare(self) -> None:
        """Imports and the -k trust store, ahead of the first record (blocking: on a thread,
        or before any fetch starts)."""
        prepare(not self.verify, self.cafile)

    def completed(self, trace: Trace, ssl_object: Any, host: str) -> None:
        if ssl_object is not None:
            trace.tls = observe(ssl_object, host, self.verify, self.cafile)

    def failed(self, trace: Trace, error: BaseException, host: str) -> None:
        """Note a failed verification (other handshake failures show no certificate)."""
        if isinstance(error, ssl.SSLCertVerificationError):
            trace.tls = failed_verification(error, host)

    async def capture(self, trace: Trace, port: int) -> None:
        """After failed(): the served certificate, from an unverified handshake to the same
        address, within what is left of the fetch's deadlines. Never raises but a cancel."""
        info, ip = trace.tls, trace.host_ip
        if info is None or info.der is not None or ip is None:
            return
        left = self.total - (time.perf_counter() - trace.started) - CAPTURE_MARGIN
        seconds = min(CAPTURE_SECONDS, self.connect, left)
        if seconds <= 0:
            info.capture_error = "certificate not captured: no time left"
            return
        await capture_into(info, ip, port, self._capture_context, seconds)


async def capture_into(
    info: TLSInfo, ip: str, port: int, context: ssl.SSLContext, seconds: float
) -> None:
    """Fill `info` with what an unverified handshake to ip:port shows, within `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            _, writer = await asyncio.open_connection(
                ip, port, ssl=context, server_hostname=info.host or None
            )
    except (OSError, EOFError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        info.capture_error = f"certificate not captured: {reason}"
        return
    try:
        seen = observe(writer.get_extra_info("ssl_object"), info.host, True, None)
        info.version, info.cipher, info.alpn, info.der = (
            seen.version,
            seen.cipher,
            seen.alpn,
            seen.der,
        )
        info.captured = True
    finally:
        writer.transport.abort()
