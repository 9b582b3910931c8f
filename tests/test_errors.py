"""Every OS, socket and ssl failure maps onto one of our kinds, with the phase it happened in."""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import ssl
from pathlib import Path

import pytest

from fetcher.errors import (
    KINDS,
    ConnectError,
    FetchError,
    FetchTimeout,
    InternalError,
    ProtocolError,
    map_exceptions,
    map_os_error,
)


def cert_error() -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "self-signed certificate"
    return exc


@pytest.mark.parametrize(
    ("exc", "kind", "phase"),
    [
        pytest.param(
            socket.gaierror(-2, "Name or service not known"), "dns-error", "dns", id="gai"
        ),
        pytest.param(cert_error(), "tls-error", "tls", id="cert"),
        pytest.param(ssl.SSLError(1, "wrong version number"), "tls-error", "tls", id="ssl"),
        pytest.param(ConnectionRefusedError(), "connection-refused", "connect", id="refused"),
        pytest.param(ConnectionResetError(), "connection-error", "connect", id="reset"),
        pytest.param(BrokenPipeError(), "connection-error", "connect", id="broken-pipe"),
        pytest.param(
            OSError(errno.EHOSTUNREACH, "No route to host"),
            "connection-error",
            "connect",
            id="unreachable",
        ),
        pytest.param(
            OSError(errno.EMFILE, "Too many open files"), "local-error", "connect", id="emfile"
        ),
        pytest.param(
            OSError(errno.EADDRNOTAVAIL, "Cannot assign"),
            "local-error",
            "connect",
            id="no-ephemeral-ports",
        ),
        pytest.param(
            asyncio.IncompleteReadError(b"", 10),
            "connection-error",
            "connect",
            id="incomplete-read",
        ),
        pytest.param(RuntimeError("odd"), "internal-error", "connect", id="anything-else"),
    ],
)
def test_map_os_error(exc: BaseException, kind: str, phase: str) -> None:
    mapped = map_os_error(exc, "connect")
    assert (mapped.kind, mapped.phase) == (kind, phase)
    assert mapped.message


def test_map_exceptions_chains_the_cause_and_passes_our_own_through() -> None:
    with pytest.raises(FetchError) as info, map_exceptions("read"):
        raise ConnectionResetError
    assert isinstance(info.value.__cause__, ConnectionResetError)
    assert info.value.phase == "read"
    ours = ProtocolError("x", "read")
    with pytest.raises(ProtocolError) as again, map_exceptions("read"):
        raise ours
    assert again.value is ours


def test_timeout_is_also_a_builtin_timeout() -> None:
    assert isinstance(FetchTimeout("t", "read"), TimeoutError)
    assert FetchTimeout("t", "read").as_dict() == {
        "kind": "timeout",
        "phase": "read",
        "message": "t",
    }


def test_an_internal_error_is_ours_and_keeps_its_cause() -> None:
    bug = KeyError("x")
    error = InternalError.wrap(bug, "read")
    assert error.as_dict() == {
        "kind": "internal-error",
        "phase": "read",
        "message": "KeyError: 'x'",
    }
    assert error.__cause__ is bug and not isinstance(error, ProtocolError)


def test_the_readme_lists_every_error_kind() -> None:
    readme = Path(__file__).resolve().parent.parent / "README.md"
    table = readme.read_text(encoding="utf-8").split("### Error kinds", 1)[1].split("\n\n")[1]
    assert sorted(re.findall(r"^\| `([a-z-]+)` \|", table, re.MULTILINE)) == sorted(KINDS)


def test_a_kind_is_declared_once() -> None:
    with pytest.raises(TypeError, match="error kind 'timeout' is FetchTimeout's already"):

        class Late(FetchError, kind="timeout"):
            pass

    class Unnamed(ConnectError):  # a library user's subclass: its parent's kind
        pass

    assert Unnamed("x").kind == "connection-error" and KINDS["connection-error"] is ConnectError
