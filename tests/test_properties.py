"""Property: whatever mix of outcomes and interruptions, one whole, valid record per input."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from conftest import make_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetcher.backends.base import Backend
from fetcher.engine import Engine
from fetcher.errors import ConnectError, ProtocolError
from fetcher.http1 import ResponseHead
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
