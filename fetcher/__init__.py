"""afetch: fetch HTTP response headers from many hosts at once.

The library entry point is `fetch_all`, an async iterator of Results::

    from fetcher import Config, fetch_all

    async for result in fetch_all(["example.com", "https://example.org/"], Config()):
        print(result.label, result.status_code, result.error)

The public names are listed below with the module each comes from, and imported on first use:
importing them all costs about 120 ms (asyncio, ssl), which `afetch --version` and `--help`,
whose code lives in this package too, must not pay.
"""

from __future__ import annotations

from .version import __version__

# typing.TYPE_CHECKING without importing typing, and importlib imported on first use: the
# afetch command handles Ctrl-C only once this package and fetcher.process are imported, and
# those imports took about 10 ms. mypy takes any TYPE_CHECKING as true.
TYPE_CHECKING = False

# Public name -> the module that defines it. README "As a library" lists the same names.
_EXPORTS = {
    "Backend": "backends",
    "ChunkResult": "scale",
    "Config": "config",
    "ConfigError": "config",
    "ConnectError": "errors",
    "ConnectionRefused": "errors",
    "DNSError": "errors",
    "Engine": "engine",
    "FetchError": "errors",
    "FetchTimeout": "errors",
    "InternalError": "errors",
    "InvalidInput": "errors",
    "Limits": "config",
    "LocalError": "errors",
    "Output": "config",
    "ProtocolError": "errors",
    "ProxyError": "errors",
    "Redirect": "models",
    "Request": "config",
    "ResponseHead": "http1",
    "Result": "models",
    "StatusSet": "config",
    "TLSError": "errors",
    "Target": "targets",
    "Timeouts": "config",
    "TooManyRedirects": "errors",
    "Trace": "models",
    "fetch_all": "stream",
    "parse_target": "targets",
    "run_chunk": "scale",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from typing import Any

    from .backends import Backend
    from .config import Config, ConfigError, Limits, Output, Request, StatusSet, Timeouts
    from .engine import Engine
    from .errors import (
        ConnectError,
        ConnectionRefused,
        DNSError,
        FetchError,
        FetchTimeout,
        InternalError,
        InvalidInput,
        LocalError,
        ProtocolError,
        ProxyError,
        TLSError,
        TooManyRedirects,
    )
    from .http1 import ResponseHead
    from .models import Redirect, Result, Trace
    from .scale import ChunkResult, run_chunk
    from .stream import fetch_all
    from .targets import Target, parse_target


def __getattr__(name: str) -> Any:
    import importlib

    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fetcher' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next look-up is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
