"""Backends do the I/O of one fetch; the engine drives them through `Backend` alone."""

from __future__ import annotations

from ..config import Config
from .base import Backend


def create_backend(config: Config) -> Backend:
    """The backend named by config.backend."""
    return backend_class(config.backend)(config)


def backend_class(name: str) -> type[Backend]:
    """The class of the backend `name` (a Config.backend), its module imported on first use, so
    --help never pays for httpx."""
    if name == "httpx":
        from .httpx_backend import HttpxBackend

        return HttpxBackend
    from .raw import RawBackend

    return RawBackend


__all__ = ["Backend", "backend_class", "create_backend"]
