"""Shared fixtures: scripted loopback hosts (plain and TLS) and a clean environment."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from fetcher.backends.base import Backend
from fetcher.config import Config, Limits, Request, Timeouts
from fetcher.errors import ConnectError
from fetcher.http1 import ResponseHead
from fetcher.loopback import LoopbackHosts
from fetcher.models import Result, Trace
from fetcher.stream import fetch_all
from fetcher.targets import Target

_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """The suite's process ends once pytest has reported, with pytest's status.

    One CI run printed its summary (every test passed) and then never exited: the
    interpreter's teardown joins what third-party code leaves behind (Dask's worker processes
    and offload thread, concurrent.futures' manager threads), and one of those can wait for
    ever on a loaded machine. Whatever is still alive is named on stderr (a leak to look
    into), child processes are stopped, and the process exits here instead of in a teardown
    nothing bounds. Coverage's data is saved and reported before this hook."""
    if not _EXIT_STATUS:  # a pytest run inside pytest, or one that never started a session
        return
    children = multiprocessing.active_children()
    threads = [t.name for t in threading.enumerate() if not t.daemon and t.is_alive()]
    threads.remove(threading.current_thread().name)
    if children or threads:
        print(f"\nconftest: left at exit: processes {children}, threads {threads}", file=sys.stderr)
    for child in children:
        child.terminate()
        child.join(5)
        if child.is_alive():
            child.kill()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS[-1])


@pytest.fixture(scope="session")
def hosts() -> Iterator[LoopbackHosts]:
    """One background loop serving every scripted host of the session on 127.0.0.1."""
    with LoopbackHosts() as loopback:
        yield loopback


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for localhost and 127.0.0.1, signed by `ca`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def wrong_name_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A certificate from the trusted CA, but for another name."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.example").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user config file and no AFETCH_* variables leak into a test."""
    import os

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in list(os.environ):
        if name.startswith("AFETCH_"):
            monkeypatch.delenv(name)


def make_config(**options: object) -> Config:
    """A Config from flat keyword options: timeout, connect_timeout, the Limits fields
    (concurrency, per_host, rate, retries), the Request fields (method, verify, cafile,
    headers, user_agent, http_version, follow_redirects, max_redirects), and Config's own
    (backend, order, scheme, ports)."""
    timeouts = Timeouts(
        total=float(options.pop("timeout", 5.0)),  # type: ignore[arg-type]
        connect=float(options.pop("connect_timeout", 5.0)),  # type: ignore[arg-type]
    )
    options.setdefault("concurrency", 10)
    limit_keys = {"concurrency", "per_host", "rate", "retries"}
    limits = Limits(**{k: options.pop(k) for k in list(options) if k in limit_keys})  # type: ignore[arg-type]
    request_keys = {
        "method", "verify", "cafile", "headers", "user_agent", "http_version",
        "follow_redirects", "max_redirects", "http2", "tls_info",
    }  # fmt: skip
    request = Request(**{k: options.pop(k) for k in list(options) if k in request_keys})  # type: ignore[arg-type]
    return Config(timeouts=timeouts, limits=limits, request=request, **options)  # type: ignore[arg-type]


FetchOne = Callable[..., Result]
FetchMany = Callable[..., list[Result]]


@pytest.fixture(params=["raw", "httpx"])
def backend_name(request: pytest.FixtureRequest) -> str:
    """Every loopback case runs on each backend listed here."""
    return str(request.param)


@pytest.fixture
def fetch(backend_name: str) -> FetchOne:
    """fetch(line, **options) -> Result: one target through the engine and the backend."""

    def run(line: str, **options: object) -> Result:
        (result,) = collect([line], make_config(backend=backend_name, **options))
        return result

    return run


@pytest.fixture
def fetch_many(backend_name: str) -> FetchMany:
    """fetch_many(lines, **options) -> Results in completion order, through engine and backend."""

    def run(lines: list[str], **options: object) -> list[Result]:
        return collect(lines, make_config(backend=backend_name, **options))

    return run


# --- a backend without a network, for the scheduler and the policy --------------------------


class StubBackend(Backend):
    """Behaviour by host name: okN answers, fail-* fails, hang-* never answers, boom-* has a bug."""

    name = "stub"

    def __init__(self, config: Config, delay: float = 0.0, jitter: float = 0.0) -> None:
        super().__init__(config)
        self.delay, self.jitter = delay, jitter
        self.in_flight = self.max_in_flight = self.calls = 0
        self.max_tasks = self.max_fetch_tasks = 0

    async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.calls % 97 == 0:
            tasks = asyncio.all_tasks()
            fetches = sum(1 for t in tasks if t.get_coro().__qualname__ == "Engine._one")  # type: ignore[union-attr]
            self.max_fetch_tasks = max(self.max_fetch_tasks, fetches)
            self.max_tasks = max(self.max_tasks, len(tasks))
        try:
            trace.phase = "read"
            if target.host.startswith("hang"):
                await asyncio.sleep(3600)
            if self.delay or self.jitter:
                await asyncio.sleep(self.delay + random.random() * self.jitter)
            else:
                await asyncio.sleep(0)
            if target.host.startswith("fail"):
                raise ConnectError("stub failure", "connect")
            if target.host.startswith("boom"):
                raise KeyError("bug")
            return ResponseHead("1.1", 200, "OK", [("X-Host", target.host)])
        finally:
            self.in_flight -= 1


def collect(lines: object, config: Config, backend: Backend | None = None) -> list[Result]:
    """fetch_all's Results to the end, on an event loop of their own (the config's backend if
    none is given)."""

    async def go() -> list[Result]:
        return [r async for r in fetch_all(lines, config, backend)]  # type: ignore[arg-type]

    return asyncio.run(go())
