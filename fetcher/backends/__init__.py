"""Backends do the I/O of one fetch; the engine drives them through `Backend` alone."""

from __future__ import annotations

from ..config import Config
from .base import Backend


def create_backend(config: Config) -> Backend:
    """The backend named by config.backend. Imported lazily so --help never pays for httpx."""
    if config.backend == "httpx":
        from .httpx_backend import HttpxBackend

        return HttpxBackend(config)
    from .raw import RawBackend

    return RawBackend(config)


__all__ = ["Backend", "create_backend"]
