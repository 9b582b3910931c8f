"""The Backend interface: one async method that does one request, and aclose()."""

from __future__ import annotations

import ssl
from abc import ABC, abstractmethod

from ..config import Config, load_cafile
from ..http1 import ResponseHead
from ..models import Trace
from ..targets import Target


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


def make_ssl_context(verify: bool, cafile: str | None) -> ssl.SSLContext:
    """Verification on unless -k; --cacert adds a trust anchor file to the system store."""
    context = ssl.create_default_context()
    if cafile:
        load_cafile(context, cafile)  # ConfigError naming the file (Request checked it already)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
