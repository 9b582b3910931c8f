"""Run configuration: frozen dataclasses that validate themselves, and TOML defaults loading."""

from __future__ import annotations

import importlib.util
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__

DEFAULT_CONCURRENCY = 100
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_USER_AGENT = f"afetch/{__version__}"
DEFAULT_ACCEPT = "*/*"
METHODS = ("GET", "HEAD")
BACKENDS = ("raw", "httpx")
ORDERS = ("completion", "input")
LOOPS = ("auto", "uvloop", "asyncio")
SCHEMES = ("http", "https")


class ConfigError(ValueError):
    """A bad option value or configuration file; reported as a usage error (exit 2)."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `total` bounds a whole fetch, whatever the server does; `connect` bounds the
    TCP connect plus TLS handshake (as curl's --connect-timeout does)."""

    total: float = DEFAULT_TIMEOUT
    connect: float = DEFAULT_CONNECT_TIMEOUT

    def __post_init__(self) -> None:
        if not self.total > 0:
            raise ConfigError(f"timeout must be positive, got {self.total}")
        if not self.connect > 0:
            raise ConfigError(f"connect timeout must be positive, got {self.connect}")


@dataclass(frozen=True, slots=True)
class Limits:
    """How much runs at once. `reorder_window` bounds results held back by --order input."""

    concurrency: int = DEFAULT_CONCURRENCY

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {self.concurrency}")

    @property
    def reorder_window(self) -> int:
        # Enough that one slow host does not stall the run, small enough to stay bounded.
        return max(4 * self.concurrency, 1024)


@dataclass(frozen=True, slots=True)
class Request:
    """What is sent: method, extra headers (after Host, User-Agent and Accept), TLS policy.
    `http2` offers HTTP/2 by ALPN on TLS connections (httpx backend with the h2 package only)."""

    method: str = "GET"
    user_agent: str = DEFAULT_USER_AGENT
    headers: tuple[tuple[str, str], ...] = ()
    verify: bool = True
    cafile: str | None = None
    http_version: str = "1.1"
    http2: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name, value in self.headers:
            if not name or any(c in name for c in " \t\r\n:") or any(c in value for c in "\r\n"):
                raise ConfigError(f"invalid header {name!r}")

    def header_lines(self) -> list[tuple[str, str]]:
        """Headers after Host: ours first unless the user set the same name."""
        given = {name.lower() for name, _ in self.headers}
        base = [
            ("User-Agent", self.user_agent),
            ("Accept", DEFAULT_ACCEPT),
            ("Connection", "close"),
        ]
        return [h for h in base if h[0].lower() not in given] + list(self.headers)


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the engine and backends need for a run."""

    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    request: Request = field(default_factory=Request)
    backend: str = "raw"
    order: str = "completion"
    scheme: str = "http"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}")
        if self.order not in ORDERS:
            raise ConfigError(f"order must be one of {', '.join(ORDERS)}")
        if self.scheme not in SCHEMES:
            raise ConfigError(f"scheme must be one of {', '.join(SCHEMES)}")
        if self.request.http2:
            if self.backend != "httpx":
                raise ConfigError("--http2 needs --backend httpx (the raw backend speaks HTTP/1.x)")
            if importlib.util.find_spec("h2") is None:
                raise ConfigError("--http2 needs the h2 package: pip install 'afetch[http2]'")
        if self.backend == "httpx" and self.request.http_version != "1.1":
            raise ConfigError("the httpx backend sends HTTP/1.1 requests only")


def load_toml_defaults(path: str | Path, options: Mapping[str, str]) -> dict[str, Any]:
    """Read a TOML file of option defaults into a click default_map.

    Keys are long option names (``connect-timeout``); `options` maps each allowed one to its
    parameter name. An unknown key raises ConfigError naming the key.
    """
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML in {path}: {exc}") from None
    defaults: dict[str, Any] = {}
    for key, value in data.items():
        if key not in options:
            raise ConfigError(f"unknown key {key!r} in {path}")
        defaults[options[key]] = value
    return defaults
