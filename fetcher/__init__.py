"""afetch: fetch HTTP response headers from many hosts at once.

The library entry point is `fetch_all`, an async iterator of Results::

    from fetcher import Config, fetch_all

    async for result in fetch_all(["example.com", "https://example.org/"], Config()):
        print(result.label, result.status_code, result.error)

Names are imported on first use, so `afetch --version` and `--help` load none of the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConnectError",
    "ConnectionRefused",
    "DNSError",
    "Engine",
    "FetchError",
    "FetchTimeout",
    "InternalError",
    "InvalidInput",
    "Limits",
    "LocalError",
    "Output",
    "ProtocolError",
    "Request",
    "Result",
    "StatusSet",
    "TLSError",
    "Target",
    "Timeouts",
    "TooManyRedirects",
    "__version__",
    "fetch_all",
    "parse_target",
]
# Where the public names live, searched in this order on first use.
_MODULES = ("config", "engine", "errors", "models", "targets")

if TYPE_CHECKING:
    from .config import Config, Limits, Output, Request, StatusSet, Timeouts
    from .engine import Engine, fetch_all
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
        TLSError,
        TooManyRedirects,
    )
    from .models import Result
    from .targets import Target, parse_target


def __getattr__(name: str) -> Any:
    if name in __all__:
        for module in _MODULES:
            value = getattr(importlib.import_module(f".{module}", __name__), name, None)
            if value is not None:
                return value
    raise AttributeError(f"module 'fetcher' has no attribute {name!r}")
