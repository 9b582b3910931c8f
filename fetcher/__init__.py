"""afetch: fetch HTTP response headers from many hosts at once.

The library entry point is `fetch_all`, an async iterator of Results::

    from fetcher import Config, fetch_all

    async for result in fetch_all(["example.com", "https://example.org/"], Config()):
        print(result.label, result.status_code, result.error)
"""

__version__ = "0.1.0"

from .config import Config, Limits, Output, Request, StatusSet, Timeouts  # noqa: E402
from .engine import Engine, fetch_all  # noqa: E402
from .errors import (  # noqa: E402
    ConnectError,
    ConnectionRefused,
    DNSError,
    FetchError,
    FetchTimeout,
    InvalidInput,
    LocalError,
    ProtocolError,
    TLSError,
    TooManyRedirects,
)
from .models import Result  # noqa: E402
from .targets import Target, parse_target  # noqa: E402

__all__ = [
    "Config",
    "ConnectError",
    "ConnectionRefused",
    "DNSError",
    "Engine",
    "FetchError",
    "FetchTimeout",
    "InvalidInput",
    "LocalError",
    "Output",
    "ProtocolError",
    "Result",
    "StatusSet",
    "TLSError",
    "Target",
    "Timeouts",
    "Limits",
    "Request",
    "TooManyRedirects",
    "__version__",
    "fetch_all",
    "parse_target",
]
