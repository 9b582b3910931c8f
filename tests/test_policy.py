"""One target through the policy, with a stub backend: scheme probing, retries, redirects,
and the one Result each fetch becomes, whatever happened on the way."""

from __future__ import annotations

import asyncio

import pytest
from conftest import StubBackend, collect, make_config

from fetcher import policy
from fetcher.config import Config
from fetcher.errors import ConnectError, ConnectionRefused, FetchTimeout, InvalidInput, TLSError
from fetcher.http1 import ResponseHead
from fetcher.models import Trace
from fetcher.policy import Policy
from fetcher.targets import Target, parse_target


def test_a_bug_outside_the_backend_call_costs_one_record_not_the_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class BugShaped(StubBackend):
        """Answers bug-* with a redirect whose Location it forgot to decode."""

        async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
            if target.host.startswith("bug"):
                return ResponseHead("1.1", 302, "Found", [("Location", b"/next")])  # type: ignore[list-item]
            return await super().fetch(target, trace)

    config = make_config(follow_redirects=True, concurrency=2)
    lines = ["bug1.example", "ok1", "bug2.example", "ok2"]
    results = collect(lines, config, BugShaped(config))
    assert sorted(r.input for r in results) == sorted(lines)
    errors = {r.input: r.error and r.error.as_dict() for r in results}
    assert errors["ok1"] is None and errors["ok2"] is None
    assert errors["bug1.example"] == {
        "kind": "internal-error",
        "phase": None,
        "message": "TypeError: Cannot mix str and non-str arguments",
    }
    assert capsys.readouterr().err == ""  # the traceback only on request:
    monkeypatch.setenv("AFETCH_DEBUG", "1")
    collect(["bug1.example"], config, BugShaped(config))
    err = capsys.readouterr().err
    assert err.startswith("afetch: internal error fetching http://bug1.example/:\nTraceback")
    assert err.endswith("TypeError: Cannot mix str and non-str arguments\n")


class Recording(StubBackend):
    """Records every target it is asked for; hosts named refuse-* fail like a closed port."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.asked: list[str] = []

    async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
        self.asked.append(target.url)
        if target.host.startswith("refuse") and target.scheme == "https":
            raise ConnectionRefused("connection refused", "connect")
        return await super().fetch(target, trace)


def test_auto_tries_https_443_then_http_80_for_a_bare_host() -> None:
    config = make_config(scheme="auto")
    backend = Recording(config)
    [result] = collect(["refuse.example"], config, backend)
    assert backend.asked == ["https://refuse.example/", "http://refuse.example/"]
    assert result.to_record()["url"] == "http://refuse.example/" and result.status_code == 200
    assert result.target is not None and result.target.port == 80


def test_auto_keeps_a_given_port_and_stops_at_an_https_answer() -> None:
    config = make_config(scheme="auto")
    backend = Recording(config)
    results = collect(["refuse.example:8080", "ok.example"], config, backend)
    assert sorted(backend.asked) == sorted(
        ["https://refuse.example:8080/", "http://refuse.example:8080/", "https://ok.example/"]
    )
    assert {r.to_record()["url"] for r in results} == {
        "http://refuse.example:8080/",
        "https://ok.example/",
    }


def test_retries_back_off_then_give_up(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    real_backoff = policy.backoff

    def recorded(retry: int) -> float:
        waits.append(real_backoff(retry))
        return 0.0  # do not really wait

    monkeypatch.setattr(policy, "backoff", recorded)
    config = make_config(retries=3)

    class Failing(StubBackend):
        async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
            self.calls += 1
            raise ConnectError("stub failure", "connect")

    backend = Failing(config)
    result = asyncio.run(Policy(config, backend).fetch(parse_target("fail.example")))
    assert result.error is not None and result.error.kind == "connection-error"
    assert backend.calls == 4 and len(waits) == 3
    for retry, wait in enumerate(waits):
        full = min(policy.RETRY_CAP, policy.RETRY_BASE * 2**retry)
        assert full / 2 <= wait <= full


def test_backoff_grows_and_is_capped() -> None:
    assert policy.RETRY_BASE / 2 <= policy.backoff(0) <= policy.RETRY_BASE
    assert 4 * policy.RETRY_BASE / 2 <= policy.backoff(2) <= 4 * policy.RETRY_BASE
    assert policy.RETRY_CAP / 2 <= policy.backoff(50) <= policy.RETRY_CAP


def test_other_errors_are_not_retried() -> None:
    config = make_config(retries=3)

    class Tls(StubBackend):
        async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
            self.calls += 1
            raise TLSError("bad certificate", "tls")

    backend = Tls(config)
    result = asyncio.run(Policy(config, backend).fetch(parse_target("x.example")))
    assert result.error is not None and result.error.kind == "tls-error"
    assert backend.calls == 1


class Redirecting(StubBackend):
    """https refused everywhere; http answers /a with 302 to /b, /b with 301 to an absolute
    URL, and the rest like the stub."""

    async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
        trace.host_ip = f"127.0.0.{len(target.path)}"
        if target.scheme == "https":
            raise ConnectionRefused("connection refused", "connect")
        if target.path == "/a":
            return ResponseHead("1.1", 302, "Found", [("Location", "/b")])
        if target.path == "/b":
            return ResponseHead("1.1", 301, "Moved", [("location", "http://ok.example/end")])
        return await super().fetch(target, trace)


def test_the_result_tells_the_whole_way_a_target_went() -> None:
    """Fallback, then two redirects: the record's url is the scheme that answered, the final
    url and peer are the last request's, and every step is kept."""
    config = make_config(scheme="auto", follow_redirects=True)
    result = asyncio.run(
        Policy(config, Redirecting(config)).fetch(parse_target("host/a", "https"), 7)
    )
    record = result.to_record()
    assert (record["url"], record["final_url"]) == ("http://host/a", "http://ok.example/end")
    assert record["status_code"] == 200 and record["host_ip"] == "127.0.0.4"
    assert [r["url"] for r in record["redirects"]] == ["http://host/a", "http://host/b"]
    assert [a["url"] for a in record["attempts"]] == ["https://host/a", "http://host/a"]
    assert record["attempts"][0]["error"]["kind"] == "connection-refused"
    assert result.index == 7 and set(result.timings) >= {"total"}


def test_too_many_redirects_is_the_targets_error() -> None:
    config = make_config(follow_redirects=True, max_redirects=1)
    result = asyncio.run(Policy(config, Redirecting(config)).fetch(parse_target("host/a")))
    assert result.error is not None and result.error.kind == "too-many-redirects"
    assert [r.url for r in result.redirects] == ["http://host/a"]
    assert result.final_url == "http://host/b"


def test_a_line_that_is_no_target_becomes_its_invalid_input_record() -> None:
    config = make_config(method="HEAD")
    error = InvalidInput("invalid host 'a b'")
    result = Policy(config, StubBackend(config)).refuse("  a b \n", error, index=3)
    record = result.to_record()
    assert (record["input"], record["method"], record["url"]) == ("a b", "HEAD", None)
    assert record["error"] == {
        "kind": "invalid-input",
        "phase": None,
        "message": "invalid host 'a b'",
    }
    assert result.index == 3


def test_a_timeout_on_the_https_try_that_is_not_the_handshake_stands() -> None:
    """A port that took TLS and then said nothing answered https: no http fallback."""

    class Silent(StubBackend):
        async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
            raise FetchTimeout("no response headers within 1 s", "read")

    config = make_config(scheme="auto")
    backend = Silent(config)
    result = asyncio.run(Policy(config, backend).fetch(parse_target("x.example", "https")))
    assert result.error is not None and result.error.phase == "read"
    assert [a.url for a in result.attempts] == ["https://x.example/"]


def test_policy_needs_nothing_but_a_config_and_a_backend() -> None:
    config = Config()
    assert Policy(config, StubBackend(config)).config is config
