"""Property: whatever mix of outcomes and interruptions, and whatever servers send, one whole,
valid record per input."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_config
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fetcher import policy
from fetcher.backends.base import Backend
from fetcher.cli import afetch
from fetcher.engine import Engine
from fetcher.errors import PHASES, ConnectError, ProtocolError
from fetcher.http1 import ResponseHead
from fetcher.loopback import LOOPBACK, LoopbackDNS, LoopbackHosts, read_request, response
from fetcher.models import Result, Trace
from fetcher.output import format_jsonl
from fetcher.targets import Target

BEHAVIOURS = ["ok", "fail", "slow", "hang", "bug", "garbage", "invalid"]


class ScriptedBackend(Backend):
    """The host name's first label says what happens: ok, fail, slow, hang, bug, garbage."""

    name = "scripted"

    async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
        behaviour = target.host.split("-")[0]
        trace.phase = "read"
        await asyncio.sleep(0.001 if behaviour != "slow" else 0.02)
        if behaviour == "hang":
            await asyncio.sleep(3600)
        if behaviour == "fail":
            raise ConnectError("refused", "connect")
        if behaviour == "garbage":
            raise ProtocolError("not http: \x1b[2J\udcff", "read")
        if behaviour == "bug":
            raise RuntimeError("oops")
        return ResponseHead("1.1", 200, "OK", [("X-Value", "\x00\x9b\u00e9")])


def line_for(i: int, behaviour: str) -> str:
    return f"bad host {i}" if behaviour == "invalid" else f"{behaviour}-{i}.example"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    behaviours=st.lists(st.sampled_from(BEHAVIOURS), min_size=1, max_size=60),
    concurrency=st.integers(min_value=1, max_value=16),
    cancel_after=st.one_of(st.none(), st.floats(min_value=0.0, max_value=0.05)),
    ordered=st.booleans(),
)
def test_one_valid_record_per_input(
    behaviours: list[str], concurrency: int, cancel_after: float | None, ordered: bool
) -> None:
    lines = [line_for(i, b) for i, b in enumerate(behaviours)]
    config = make_config(
        concurrency=concurrency, timeout=0.05, order="input" if ordered else "completion"
    )
    written: list[str] = []

    async def sink(result: Result) -> None:
        written.append(format_jsonl(result))

    async def go() -> bool:
        engine = Engine(config, ScriptedBackend(config))
        run = asyncio.create_task(engine.run(lines, sink))
        if cancel_after is None:
            await run
            return False
        await asyncio.sleep(cancel_after)
        run.cancel()
        try:
            await run
        except asyncio.CancelledError:
            return True
        return False

    cancelled = asyncio.run(go())
    records = [json.loads(text) for text in written]  # every line is valid JSON
    assert all(text.endswith("\n") and text.count("\n") == 1 for text in written)
    counts = Counter(r["input"] for r in records)
    assert all(n == 1 for n in counts.values())  # never two records for one input
    if not cancelled:
        assert sorted(counts) == sorted(lines)  # and none lost
        if ordered:
            assert [r["input"] for r in records] == lines
    for record in records:
        behaviour = record["input"].split("-")[0]
        expected = {
            "ok": None, "slow": None, "fail": "connection-error", "hang": "timeout",
            "bug": "internal-error", "garbage": "protocol-error",
        }.get(behaviour, "invalid-input")  # fmt: skip
        assert (record["error"] or {}).get("kind") == expected


# --- whatever a server sends: one record per target, never the end of the run ---------------


class HostileServer:
    """One loopback port for the whole module. A request for /KEY/... gets the bytes loaded
    under KEY (any other path, 200 OK); a TLS ClientHello gets a plain HTTP answer, so under
    --scheme auto https fails and the target is tried again over http."""

    def __init__(self, hosts: LoopbackHosts) -> None:
        self.replies: dict[str, bytes] = {}
        self.port = hosts.serve(self.script)

    def load(self, answers: list[bytes]) -> list[str]:
        """Serve `answers`, one per new key, with PORT made this server's port and KEY the
        next answer's key (so redirects lead from one to another); return the keys."""
        first = len(self.replies)
        # Letters only: a key in a Location never makes it an address elsewhere.
        keys = [
            "k" + "".join(chr(ord("a") + int(d)) for d in str(first + i))
            for i in range(len(answers))
        ]
        for i, (key, answer) in enumerate(zip(keys, answers, strict=True)):
            answer = answer.replace(PORT, str(self.port).encode())
            self.replies[key] = answer.replace(KEY, keys[(i + 1) % len(keys)].encode())
        return keys

    async def script(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.read(1)
        if first == b"\x16":  # a TLS handshake record
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            await writer.drain()
            return
        request = first + await read_request(reader)
        path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b"/"
        key = path.split(b"/")[1].decode("latin-1") if path.startswith(b"/") else ""
        writer.write(self.replies.get(key, OK))
        await writer.drain()


OK = response("200 OK")
# What a server can cause: never invalid-input, local-error nor internal-error.
KINDS = {
    "dns-error", "connection-error", "connection-refused", "tls-error", "timeout",
    "protocol-error", "too-many-redirects",
}  # fmt: skip
# Placeholders in the drawn replies for the hostile server's port and keys (see load()).
PORT, KEY = b"@PORT@", b"@KEY@"
# A Location is built from these parts, so that whatever hypothesis draws, a redirect leads
# only to this machine: the only digits and colons in it are those of the loopback authorities
# below (no other IPv4 or IPv6 literal can be drawn; names ask the loopback DNS server). NFKC
# and IDNA turn fullwidth digits into digits, so there are none of those either.
LOCATION_SCHEMES = [
    b"http://", b"https://", b"HTTP://", b"//", b"", b"http:", b"ftp://", b"mailto:",
]  # fmt: skip
LOCATION_HOSTS = [
    b"127.0.0.1:" + PORT, b"[::1]:" + PORT, b"[bad", b"a]b", b"[::1", b"127.0.0.1:99999",
    b"127.0.0.1:0", b"nx.test", b"", "\u00e9xample.test".encode(),
]  # fmt: skip
LOCATION_TEXT = st.text(
    alphabet=st.sampled_from(list("abcxyzKLM/?#%&=.-_~ @\\[]\t\x7f\x80éü\u3002\uff0e\u200b\ufffd")),
    max_size=8,
).map(str.encode)
LOCATIONS = st.builds(
    lambda scheme, host, path, text: scheme + host + path + text,
    st.sampled_from(LOCATION_SCHEMES),
    st.sampled_from(LOCATION_HOSTS),
    st.sampled_from([b"", b"/", b"/" + KEY + b"/"]),
    LOCATION_TEXT,
)
# Arbitrary bytes with no line break: they cannot start a Location field of their own.
PIECE = st.binary(max_size=12).map(lambda b: b.replace(b"\n", b""))
FIELDS = st.one_of(
    st.tuples(st.sampled_from([b"Location", b"location", b"LOCATION"]), LOCATIONS),
    st.tuples(st.sampled_from([b"Content-Length", b"Set-Cookie", b"X-A", b" folded"]), PIECE),
    st.tuples(PIECE.filter(lambda name: b"location" not in name.lower()), PIECE),
)
CODES = st.one_of(
    st.sampled_from([b"301", b"302", b"303", b"307", b"308"]),
    st.sampled_from([b"200", b"100", b"101", b"304", b"099", b"600", b"2", b"1000"]),
    st.integers(0, 999).map(lambda n: b"%03d" % n),
)


@st.composite
def replies(draw: st.DrawFn) -> bytes:
    """A response head: a status line, a Location or not, other fields, an end or not, maybe
    a body; or a few bytes that are no HTTP at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(PIECE)
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 "]))
    reason = draw(st.sampled_from([b"", b" Found", b" \xe9"]) | PIECE)
    head = version + b" " + draw(CODES) + reason
    fields = draw(st.lists(FIELDS, max_size=3))
    if draw(st.booleans()):
        fields.insert(0, (b"Location", draw(LOCATIONS)))
    for name, value in fields:
        line_end = draw(st.sampled_from([b"\r\n", b"\n"]))
        head += line_end + name + b":" + draw(st.sampled_from([b"", b" ", b"\t"])) + value
    end = draw(st.sampled_from([b"\r\n\r\n", b"\n\n", b"\r\n", b""]))
    return head + end + draw(st.sampled_from([b"", b"body", b"\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"]))


@pytest.fixture(scope="module")
def hostile(hosts: LoopbackHosts) -> Iterator[tuple[HostileServer, str]]:
    """The hostile server, and a loopback DNS server for the names a Location may hold."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(policy, "RETRY_BASE", 0.001)  # retries wait about a millisecond here
        dns = hosts.serve_dns(LoopbackDNS({"loop.test": [LOOPBACK]}))
        yield HostileServer(hosts), f"{LOOPBACK}:{dns}"


def redirect_to(location: bytes) -> list[bytes]:
    return [b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"]


@pytest.mark.parametrize("backend", ["raw", "httpx"])
# A few examples only: each is a run of afetch, and loading the CA store for TLS (--scheme
# auto, an https Location, or the httpx backend) costs most of it, about 0.1 s here.
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    answers=st.lists(replies(), min_size=1, max_size=3),
    follow=st.booleans(),
    scheme=st.sampled_from(["http", "auto"]),
    retries=st.integers(0, 1),
    shown=st.sampled_from(["text", "jsonl", "csv"]),
)
@example(answers=redirect_to(b"http://[bad"), follow=True, scheme="http", retries=0, shown="text")
@example(answers=redirect_to(b"http://a]b/"), follow=True, scheme="auto", retries=1, shown="csv")
def test_whatever_servers_send_one_record_per_target_and_exit_0_or_1(
    hostile: tuple[HostileServer, str],
    backend: str,
    answers: list[bytes],
    follow: bool,
    scheme: str,
    retries: int,
    shown: str,
) -> None:
    server, resolver = hostile
    targets = [f"127.0.0.1:{server.port}/{key}/x" for key in server.load(answers)]
    with tempfile.TemporaryDirectory() as directory:
        jsonl = Path(directory) / "records.jsonl"
        args = [
            "--format", shown, "-o", str(jsonl), "--backend", backend, "--scheme", scheme,
            "--resolver", resolver, "--timeout", "3", "--connect-timeout", "2",
            "--max-redirects", "3", "--retries", str(retries), *(["-L"] if follow else []),
            *targets,
        ]  # fmt: skip
        run = CliRunner().invoke(afetch, args)
        assert run.exit_code in (0, 1), (run.exit_code, run.stderr, run.exception)
        assert run.stdout and not run.stderr  # written in the format shown, without a hitch
        records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert sorted(record["input"] for record in records) == sorted(targets)
    for record in records:
        error = record["error"]
        if error is None:
            assert record["status_code"] in range(100, 600), record
        else:
            assert error["kind"] in KINDS and error["phase"] in PHASES, record
    failed = any(record["error"] is not None for record in records)
    assert run.exit_code == (1 if failed else 0)
