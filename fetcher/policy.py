"""One target, start to finish: scheme probing, retries, redirects, pacing and the total deadline
around each request, and the one place its Result is built.

    target ──► probe (--scheme auto) ──► retry ──► request ──► 3xx? ──► follow (-L) ──► Result
                                           ▲          │                                  ▲
                                           └─ backoff ┘ connection error or timeout      │
                          --audit, a bare host that answered over https: http://host/ ───┘
                          followed too (MDN's redirection test), then the head is graded

The backend does one request; the scheduler (engine.py) runs many of these at once. Like
httpx's `_send_handling_redirects`, the policy knows the order of requests, never their bytes.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from . import verbose
from .backends import Backend
from .config import Config
from .deadlines import Deadlines
from .errors import (
    ConnectError,
    FetchError,
    FetchTimeout,
    InternalError,
    InvalidInput,
    ProtocolError,
    TLSError,
    TooManyRedirects,
    timed_out,
)
from .http1 import ResponseHead
from .models import Attempt, Redirect, Result, Trace
from .pacing import PerHostLimiter, RateLimiter
from .targets import DEFAULT_PORTS, Target, parse_target

if TYPE_CHECKING:
    from .audit import Audit, HttpProbe
    from .tls import TLSInfo

# Statuses whose Location -L follows. 300 Multiple Choices and 304 Not Modified are answers.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Retry backoff: the n-th retry waits about RETRY_BASE * 2**n seconds, capped at RETRY_CAP.
# Half a second first is long enough for a dropped SYN or a restarting server, and the cap
# keeps --retries 10 from stalling a slot for minutes.
RETRY_BASE = 0.5
RETRY_CAP = 10.0


def backoff(retry: int) -> float:
    """Seconds before retry number `retry` (0-based): exponential, with "equal jitter" (half
    fixed, half random) so many targets failing together do not come back in lockstep."""
    delay = min(RETRY_CAP, RETRY_BASE * 2.0**retry)
    return delay / 2 + random.uniform(0, delay / 2)


def _show_bug(target: Target, error: InternalError) -> None:
    """AFETCH_DEBUG=1: an internal-error's traceback on stderr, as a bug that ends a run shows
    its own; the record alone says only the exception's type and message."""
    if os.environ.get("AFETCH_DEBUG") and error.__cause__ is not None:
        shown = "".join(traceback.format_exception(error.__cause__))
        sys.stderr.write(f"afetch: internal error fetching {target.url}:\n{shown}")


@dataclass(slots=True)
class _Visit:
    """What one target's fetch has learned so far, across its requests: the Result is made of
    this once, at the end, however the fetch ended."""

    target: Target  # what the record's url names: the target, or its http fallback
    last: Target  # what the last request went to (after redirects)
    trace: Trace = field(default_factory=Trace)  # of the last request
    redirects: list[Redirect] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)  # the schemes --scheme auto tried

    @property
    def route(self) -> tuple[str, ...]:
        """Every URL asked since the last scheme choice, the one that answered last."""
        return (*(redirect.url for redirect in self.redirects), self.last.url)


Step = Callable[[Target, _Visit], Awaitable[ResponseHead]]
Tracer = Callable[[Target, str], None]  # -v: (the request's target, one step of it)


class Policy:
    """Fetches one target at a time through `backend`; never raises for a failed fetch."""

    def __init__(self, config: Config, backend: Backend, tracer: Tracer | None = None) -> None:
        """`tracer` (-v) is told each request's connection steps, with the request's target."""
        self.config = config
        self.backend = backend
        self._tracer = tracer
        limits, request = config.limits, config.request
        # The total deadline of every request (what asyncio.wait_for would do, at a fraction of
        # the cost: see deadlines.py).
        self._deadlines = Deadlines(config.timeouts.total)
        self._rate = RateLimiter(limits.rate) if limits.rate else None
        self._per_host = PerHostLimiter(limits.per_host) if limits.per_host else None
        # No probing, retries or redirects: one request per target, without the layers that
        # implement them (each await passes through every frame of the chain).
        self._auto = config.bare_scheme == "auto"
        single = not self._auto and limits.retries == 0 and not request.follows_redirects
        self._first: Step = self._request if single else self._follow
        # The grader (audit.py) is imported only under --audit: about 30 ms of start-up.
        self._audits = request.audit

    async def fetch(self, target: Target, index: int = -1, expanded: bool = False) -> Result:
        """Fetch one target: its Result holds the final response head or the error that ended
        the fetch, and what the last request learned (peer, timings, URL). Never raises: a bug
        met on the way is this target's internal-error, which must not end the run."""
        visit = _Visit(target, target)
        head: ResponseHead | None = None
        error: FetchError | None = None
        graded: Audit | None = None
        try:
            head = await self._first(target, visit)
            if self._audits:
                graded = await self._grade(visit, head)
        except FetchError as exc:  # the audit's too: a head and an error are never both kept
            head, error = None, exc
        except Exception as exc:  # a bug of ours on this target's path: its record, not the run
            head, error = None, InternalError.wrap(exc)
        if isinstance(error, InternalError):
            _show_bug(target, error)
        return self._result(visit, head, error, index, expanded, graded)

    def refuse(self, line: str, error: InvalidInput, index: int = -1) -> Result:
        """The Result of a line that is no target: its error, and nothing fetched."""
        method, backend = self.config.request.method, self.backend.name
        return Result(line.strip(), None, method, backend, index=index, error=error)

    def _result(
        self,
        visit: _Visit,
        head: ResponseHead | None,
        error: FetchError | None,
        index: int,
        expanded: bool,
        graded: Audit | None = None,
    ) -> Result:
        target = visit.target
        return Result(
            input=target.input,
            target=target,
            method=self.config.request.method,
            backend=self.backend.name,
            host_ip=visit.trace.host_ip,
            status_code=head.status_code if head else None,
            reason=head.reason if head else None,
            http_version=head.http_version if head else None,
            headers=head.headers if head else [],
            timings=visit.trace.timings,
            error=error,
            timestamp=time.time(),
            index=index,
            redirects=visit.redirects,
            attempts=visit.attempts,
            final_target=visit.last,
            expanded=expanded,
            # After a fallback to http, the https attempt's: a bad certificate stays in sight.
            tls=visit.trace.tls or (_https_tls(visit.attempts) if visit.attempts else None),
            audit=graded,
        )

    async def _follow(self, target: Target, visit: _Visit) -> ResponseHead:
        """The first request (probing the scheme if asked), then, with -L, one request per
        redirect. Relative locations resolve against the URL that answered; only http and
        https locations are followed, other ones end the chain with the 3xx as the answer."""
        head = await self._retrying(self._probe, target, visit)
        request = self.config.request
        if not request.follows_redirects:
            return head
        current = visit.last
        while head.status_code in REDIRECT_STATUSES:
            location = next((v for k, v in head.headers if k.lower() == "location"), None)
            if location is None:
                break
            try:
                url = urljoin(current.url, location.strip())
                scheme = urlsplit(url).scheme.lower()
            except ValueError as exc:  # a '[' or ']' out of place: "Invalid IPv6 URL"
                raise ProtocolError(
                    f"cannot follow Location {location!r}: {exc}", "redirect"
                ) from None
            if scheme not in DEFAULT_PORTS:
                break
            if len(visit.redirects) >= request.max_redirects:
                raise TooManyRedirects(
                    f"more than {request.max_redirects} redirects (last to {url})", "redirect"
                )
            try:
                hop = replace(parse_target(url), input=target.input)
            except InvalidInput as exc:
                raise ProtocolError(
                    f"cannot follow Location {location!r}: {exc.message}", "redirect"
                ) from None
            visit.redirects.append(Redirect(current.url, head.status_code, location))
            head = await self._retrying(self._request, hop, visit)
            current = hop
        return head

    async def _probe(self, target: Target, visit: _Visit) -> ResponseHead:
        """--scheme auto: https first; http only if https could not connect or shake hands.

        A handshake that times out counts as failed: the port took the connection but does not
        speak TLS (many plain HTTP servers wait silently for a request line that a ClientHello
        never completes). Any other timeout, and any HTTP answer, is https's answer and stands.
        Each try is kept in the record, so a fallback never hides why https was not used.
        """
        if not self._auto or target.explicit_scheme:
            return await self._request(target, visit)
        visit.attempts = attempts = []  # a retry of the probe keeps only its own tries
        try:
            head = await self._request(target, visit)
        except FetchError as exc:
            attempts.append(Attempt(target.url, exc, visit.trace.tls))
            if not _https_failed(exc):
                raise
        else:
            attempts.append(Attempt(target.url, tls=visit.trace.tls))
            return head
        port = target.port if target.explicit_port else DEFAULT_PORTS["http"]
        # The record's url says which scheme answered (or, if none did, was tried last).
        visit.target = fallback = replace(target, scheme="http", port=port)
        try:
            head = await self._request(fallback, visit)
        except FetchError as exc:
            attempts.append(Attempt(fallback.url, exc))
            raise
        attempts.append(Attempt(fallback.url))
        return head

    async def _retrying(self, attempt: Step, target: Target, visit: _Visit) -> ResponseHead:
        """Try again after a connection error or a timeout, with exponential backoff and jitter,
        up to --retries times. An HTTP status, whatever it is, is an answer: never retried."""
        retries = self.config.limits.retries
        for tried in range(retries + 1):
            try:
                return await attempt(target, visit)
            except (ConnectError, FetchTimeout):
                if tried == retries:
                    raise
            await asyncio.sleep(backoff(tried))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request(self, target: Target, visit: _Visit) -> ResponseHead:
        """One request through the backend, paced by --per-host and --rate, under the total
        deadline."""
        async with self._per_host_slot(target):
            if self._rate is not None:
                await self._rate.acquire()
            log = functools.partial(self._tracer, target) if self._tracer else None
            visit.trace = trace = Trace(log=log)
            visit.last = target
            deadline = self._deadlines.start()
            try:
                head = await self.backend.fetch(target, trace)
                verbose.answered(trace, head)
                return head
            except FetchError:
                raise
            except asyncio.CancelledError:
                if not self._deadlines.expired(deadline):
                    raise  # the run is being cancelled: this fetch is not reported
                raise timed_out(trace.phase, self.config.timeouts.total) from None
            except Exception as exc:  # a bug in a backend: the phase it was in, for the record
                raise InternalError.wrap(exc, trace.phase) from exc
            finally:
                self._deadlines.stop(deadline)
                trace.mark("total", trace.started)

    async def _grade(self, visit: _Visit, head: ResponseHead) -> Audit:
        """--audit: MDN's grade of the final head, with the plain-http route it learned."""
        from .audit import AUDIT_ORIGIN, audit

        probe = await self._http_route(visit)
        tls = visit.trace.tls
        if tls is not None:
            tls.settle()  # with -k the handshake did not verify: the offline verdict says
        verified = tls.verified is not False if tls is not None else self.config.request.verify
        return audit(
            head.headers,
            url=visit.last.url,
            scheme=visit.target.scheme,
            tls_verified=verified,
            http_probe=probe,
            origin=self.config.request.origin or AUDIT_ORIGIN,
        )

    async def _http_route(self, visit: _Visit) -> HttpProbe | None:
        """Where plain http leads, for MDN's redirection test: the fetch's own route when it
        began over http (an http URL, --scheme http, or the --scheme auto fallback), none for
        an https URL (fetched as given), else one more fetch, as MDN does: http:// on the
        http port (80; MDN's too when the line names the https port), redirects followed."""
        from .audit import HttpProbe

        first = visit.target
        if first.scheme == "http":
            return HttpProbe(visit.route)
        if first.explicit_scheme:
            return None
        port = self.config.request.audit_http_port
        http = replace(first, scheme="http", port=port, explicit_scheme=True, explicit_port=True)
        probe = _Visit(http, http)
        try:
            await self._follow(http, probe)
        except TLSError:  # an https hop on the way would not verify (or shake hands)
            return HttpProbe(probe.route, verified=False)
        except TooManyRedirects:  # MDN stops following too, and judges the route so far
            return HttpProbe(probe.route)
        except InternalError:  # a bug of ours is this target's internal-error, not "no http"
            raise
        except FetchError:  # http does not answer: MDN's "no http", whatever went wrong
            return HttpProbe(())
        return HttpProbe(probe.route)

    def _per_host_slot(self, target: Target) -> AbstractAsyncContextManager[None]:
        if self._per_host is None:
            return nullcontext()
        return self._per_host.hold((target.host, target.port))


def _https_failed(exc: FetchError) -> bool:
    """Whether an https try's error means the port speaks no (usable) TLS, so --scheme auto
    tries http: no connection, a failed handshake, or one not done in time."""
    if exc.phase == "proxy":  # the proxy failed: plain http through it would fail alike
        return False
    if isinstance(exc, FetchTimeout):
        return exc.phase == "tls"
    return isinstance(exc, (ConnectError, TLSError))


def _https_tls(attempts: list[Attempt]) -> TLSInfo | None:
    """The TLS facts of the https try --scheme auto fell back from, if it got that far."""
    return next((attempt.tls for attempt in attempts if attempt.tls), None)
