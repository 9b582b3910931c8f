"""The errors a fetch can end in, and the one place foreign exceptions are mapped onto them.

    FetchError                 every failure a record can carry; .kind is its stable name
    ├── InvalidInput           invalid-input       the line cannot be a target
    ├── DNSError               dns-error           the name does not resolve
    ├── ConnectError           connection-error    reset, closed early, unreachable
    │   └── ConnectionRefused  connection-refused  nothing listens on the port
    ├── LocalError             local-error         this machine ran out of something (fds, ports)
    ├── TLSError               tls-error           handshake or certificate failure
    ├── FetchTimeout           timeout             a deadline passed (also a TimeoutError)
    ├── ProtocolError          protocol-error      the peer did not speak HTTP/1.x within our limits
    ├── TooManyRedirects       too-many-redirects  a redirect chain longer than allowed
    ├── ProxyError             proxy-error         the proxy (-x) refused or failed the tunnel
    └── InternalError          internal-error      a bug in afetch, not the host's doing

Every error also names the *phase* it happened in: dns, connect, tls, write, read (waiting for or
reading the header section), redirect, or proxy (reaching the -x proxy, its CONNECT answer or its
SOCKS5 handshake: the proxy failed, not the target); none for invalid-input, and none for an
internal-error outside a request. `Phase` spells them for the type checker.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, get_args

Phase = Literal["dns", "connect", "tls", "write", "read", "redirect", "proxy"]
PHASES: tuple[Phase, ...] = get_args(Phase)
# Error kind -> its class, as each FetchError subclass declares it (README "Error kinds").
KINDS: dict[str, type[FetchError]] = {}


class FetchError(Exception):
    """A failure that ends one target's fetch and becomes that target's error record.

    A subclass names its kind on its class line, ``class DNSError(FetchError, kind="dns-error")``:
    each kind once, all of them in `KINDS`. One without a kind (a library user's) has its
    parent's.
    """

    kind = "fetch-error"

    def __init_subclass__(cls, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is None:
            return
        taken = KINDS.get(kind)
        if taken is not None:
            raise TypeError(f"error kind {kind!r} is {taken.__name__}'s already")
        cls.kind = kind
        KINDS[kind] = cls

    def __init__(self, message: str, phase: Phase | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.phase = phase

    def as_dict(self) -> dict[str, str | None]:
        return {"kind": self.kind, "phase": self.phase, "message": self.message}


class InvalidInput(FetchError, kind="invalid-input"):
    """The input line cannot be a target (bad host, port or scheme); nothing was fetched."""


class DNSError(FetchError, kind="dns-error"):
    """The name has no address: NXDOMAIN, no A/AAAA record, or no answer from the DNS server."""


class ConnectError(FetchError, kind="connection-error"):
    """The connection failed or was lost: reset, closed early, unreachable."""


class ConnectionRefused(ConnectError, kind="connection-refused"):
    """Nothing listens on the port: the host said so (RST), it did not merely stay silent."""


class LocalError(FetchError, kind="local-error"):
    """Out of file descriptors or ephemeral ports: the fault is here, not at the host."""


class TLSError(FetchError, kind="tls-error"):
    """The TLS handshake failed, or the certificate did not verify."""


class FetchTimeout(FetchError, TimeoutError, kind="timeout"):
    """A deadline passed (--timeout for the fetch, --connect-timeout for connect + TLS)."""


def timed_out(phase: Phase, seconds: float) -> FetchTimeout:
    """The error for a deadline of `seconds` that passed in `phase`, worded the same wherever
    it is raised (the total deadline, the connect deadline, either backend)."""
    what = "no response headers" if phase == "read" else f"{phase} not done"
    return FetchTimeout(f"{what} within {seconds:g} s", phase)


class ProtocolError(FetchError, kind="protocol-error"):
    """The peer did not speak HTTP/1.x (or h2) within afetch's limits (http1.py)."""


class TooManyRedirects(FetchError, kind="too-many-redirects"):
    """With -L, a redirect chain longer than --max-redirects."""


class ProxyError(FetchError, kind="proxy-error"):
    """The proxy answered CONNECT with something else than a 2xx (403, 407, 502...), or refused
    or failed the SOCKS5 handshake (authentication, a reply of its own failure, a reply that is
    not SOCKS5): it, not the target, ended the fetch. Not retried, and no reason for --scheme
    auto to try http."""


class InternalError(FetchError, kind="internal-error"):
    """An exception afetch did not expect: a bug of ours. It costs the one target it hit a
    record (never blamed on the server as a protocol-error), and the run goes on."""

    @classmethod
    def wrap(cls, exc: BaseException, phase: Phase | None = None) -> InternalError:
        error = cls(f"{type(exc).__name__}: {exc}", phase)
        error.__cause__ = exc
        return error


# errno values that mean this machine, not the remote host, is out of a resource.
_LOCAL_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.EADDRNOTAVAIL, errno.ENOBUFS})


def map_os_error(exc: BaseException, phase: Phase) -> FetchError:
    """Translate an exception raised by socket, ssl or asyncio I/O into our error tree; any
    other exception is a bug here, an internal-error."""
    if isinstance(exc, FetchError):
        return exc
    if isinstance(exc, socket.gaierror):
        return DNSError(f"cannot resolve host: {exc.strerror or exc}", "dns")
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = getattr(exc, "verify_message", None) or exc
        return TLSError(f"certificate verify failed: {detail}", "tls")
    if isinstance(exc, ssl.SSLError):
        return TLSError(f"TLS failure: {getattr(exc, 'reason', None) or exc}", "tls")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectionRefused("connection refused", phase)
    if isinstance(exc, ConnectionResetError):
        return ConnectError("connection reset by peer", phase)
    if isinstance(exc, (ConnectionAbortedError, BrokenPipeError)):
        return ConnectError("connection closed by peer", phase)
    if isinstance(exc, OSError):
        if exc.errno in _LOCAL_ERRNOS:
            return LocalError(f"local resource exhausted: {exc.strerror}", phase)
        reason = exc.strerror or str(exc) or type(exc).__name__
        return ConnectError(reason[0].lower() + reason[1:], phase)
    if isinstance(exc, EOFError):  # asyncio.IncompleteReadError
        return ConnectError("connection closed by peer", phase)
    return InternalError.wrap(exc, phase)  # not an I/O failure: nothing the host did


@contextmanager
def map_exceptions(phase: Phase) -> Iterator[None]:
    """Re-raise socket/ssl/OS exceptions from the block as FetchErrors tagged with `phase`."""
    try:
        yield
    except FetchError:
        raise
    except (OSError, EOFError) as exc:
        raise map_os_error(exc, phase) from exc
