"""Config dataclasses validate themselves; the small parsers behind --ports and --*-status."""

from __future__ import annotations

import pytest

from fetcher.config import ConfigError, Limits, Output, Request, StatusSet, parse_ports


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("80", (80,), id="one"),
        pytest.param("80,443, 8080-8082", (80, 443, 8080, 8081, 8082), id="list-and-range"),
        pytest.param("443,80,443,80-81", (443, 80, 81), id="duplicates-once-in-given-order"),
        pytest.param("", (), id="empty"),
        pytest.param("1-65535", tuple(range(1, 65536)), id="every-port"),
    ],
)
def test_parse_ports(text: str, expected: tuple[int, ...]) -> None:
    assert parse_ports(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("http", id="word"),
        pytest.param("0", id="zero"),
        pytest.param("65536", id="too-big"),
        pytest.param("90-80", id="backwards"),
        pytest.param("-80", id="open-range"),
        pytest.param("80-", id="open-end"),
        pytest.param("8 0", id="space"),
    ],
)
def test_parse_ports_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="port"):
        parse_ports(text)


def test_status_set_codes_and_classes() -> None:
    statuses = StatusSet.parse("200, 3xx,404,5XX")
    assert 200 in statuses and 301 in statuses and 399 in statuses and 503 in statuses
    assert 201 not in statuses and 403 not in statuses and None not in statuses
    assert not StatusSet.parse("") and StatusSet.parse("1xx")


@pytest.mark.parametrize("text", ["2xy", "600", "20", "ok", "6xx", "x00"])
def test_status_set_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid status"):
        StatusSet.parse(text)


def test_output_shows_by_match_and_filter() -> None:
    everything = Output()
    assert everything.shows(200) and everything.shows(None)
    matched = Output(match_status=StatusSet.parse("2xx"))
    assert matched.shows(204) and not matched.shows(404) and not matched.shows(None)
    filtered = Output(filter_status=StatusSet.parse("404,5xx"))
    assert filtered.shows(200) and filtered.shows(None) and not filtered.shows(503)
    both = Output(match_status=StatusSet.parse("2xx,4xx"), filter_status=StatusSet.parse("404"))
    assert both.shows(403) and not both.shows(404)


def test_output_checks_field_names_for_its_format() -> None:
    assert Output(format="jsonl", fields=("url", "status_code")).fields == ("url", "status_code")
    assert Output(format="csv", fields=("total_ms", "error_kind")).format == "csv"
    with pytest.raises(ConfigError, match="unknown field 'total_ms' for --format jsonl"):
        Output(format="jsonl", fields=("total_ms",))
    with pytest.raises(ConfigError, match="unknown field 'headers' for --format csv"):
        Output(format="csv", fields=("headers",))
    with pytest.raises(ConfigError, match="jsonl and csv only"):
        Output(format="text", fields=("url",))
    with pytest.raises(ConfigError, match="format"):
        Output(format="xml")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda: Limits(per_host=-1), "per-host", id="per-host"),
        pytest.param(lambda: Limits(rate=-0.5), "rate", id="rate"),
        pytest.param(lambda: Limits(rate=float("nan")), "rate", id="rate-nan"),
        pytest.param(lambda: Limits(retries=-1), "retries", id="retries"),
        pytest.param(lambda: Request(http_version="2"), "http version", id="http-version"),
        pytest.param(lambda: Request(max_redirects=-1), "max-redirects", id="max-redirects"),
    ],
)
def test_bad_values_raise_config_error(make: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()  # type: ignore[operator]
