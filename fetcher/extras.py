"""The optional packages: whether each is installed, and what to install when it is not.

Probed here only, by importing (a package can be present and still fail to load, as aiodns does
without its c-ares library); each probe runs when the option that needs it is used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from .options import ConfigError


@dataclass(frozen=True, slots=True)
class Extra:
    """An optional package, and the usage error that says an option needs it."""

    module: str
    missing: str  # the error when an option needs it and it does not import

    def load(self) -> ModuleType | None:
        """The module, or None when it is not installed (or does not import here)."""
        try:
            return importlib.import_module(self.module)
        except ImportError:
            return None

    @property
    def available(self) -> bool:
        return self.load() is not None

    def require(self) -> ModuleType:
        """The module; ConfigError with the install hint when it is missing."""
        module = self.load()
        if module is None:
            raise ConfigError(self.missing)
        return module


H2 = Extra("h2", "--http2 needs the h2 package: pip install 'afetch[http2]'")
AIODNS = Extra("aiodns", "--resolver needs aiodns, which is not installed (pip install aiodns)")
UVLOOP = Extra("uvloop", "--loop uvloop: uvloop is not installed (pip install uvloop)")
SOCKS = Extra("python_socks", "SOCKS5 proxies need python-socks: pip install 'afetch[socks]'")
TRUSTME = Extra("trustme", "needs trustme: pip install 'afetch[demo]'")  # make demo's TLS host
