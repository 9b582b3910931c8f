"""Config dataclasses validate themselves; the small parsers behind --ports and --*-status."""

from __future__ import annotations

from pathlib import Path

import pytest

from fetcher.config import (
    ConfigError,
    ConfigKey,
    Limits,
    Output,
    Request,
    StatusSet,
    load_toml_defaults,
    parse_ports,
)


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


# --- TOML defaults: each value must have its option's type ---------------------------------

KEYS = {
    "concurrency": ConfigKey("concurrency", "integer"),
    "timeout": ConfigKey("timeout", "number"),
    "insecure": ConfigKey("insecure", "boolean"),
    "method": ConfigKey("method", "string"),
    "header": ConfigKey("headers", "string", repeated=True),
}


def load(tmp_path: Path, text: str) -> dict[str, object]:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_toml_defaults(path, KEYS)


def test_toml_values_of_the_right_type_are_kept_as_they_are(tmp_path: Path) -> None:
    text = 'concurrency = 300\ntimeout = 5\ninsecure = true\nmethod = "HEAD"\nheader = ["A: 1"]\n'
    assert load(tmp_path, text) == {
        "concurrency": 300,
        "timeout": 5,  # an integer is a number too
        "insecure": True,
        "method": "HEAD",
        "headers": ["A: 1"],
    }
    assert load(tmp_path, "timeout = 2.5\n") == {"timeout": 2.5}


def test_a_lone_string_for_a_repeatable_option_is_a_list_of_one(tmp_path: Path) -> None:
    assert load(tmp_path, 'header = "X-One: 1"\n') == {"headers": ["X-One: 1"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            'concurrency = "300"', 'expected an integer, got a string "300"', id="int-str"
        ),
        pytest.param("concurrency = 2.5", "expected an integer, got a float 2.5", id="int-float"),
        pytest.param(
            "concurrency = true", "expected an integer, got a boolean true", id="int-bool"
        ),
        pytest.param('timeout = "5"', 'expected a number, got a string "5"', id="number-str"),
        pytest.param("timeout = false", "expected a number, got a boolean false", id="number-bool"),
        pytest.param('insecure = "yes"', 'expected a boolean, got a string "yes"', id="bool-str"),
        pytest.param("insecure = 1", "expected a boolean, got an integer 1", id="bool-int"),
        pytest.param("method = 1", "expected a string, got an integer 1", id="str-int"),
        pytest.param("method = [1]", "expected a string, got an array", id="str-array"),
        pytest.param("method = { a = 1 }", "expected a string, got a table", id="str-table"),
        pytest.param("method = 1979-05-27", "expected a string, got a date 1979-05-27", id="date"),
        pytest.param(
            'header = ["A: 1", 2]', "expected a list of strings, got an integer 2", id="list-item"
        ),
        pytest.param("header = 3", "expected a list of strings, got an integer 3", id="list-int"),
    ],
)
def test_toml_values_of_the_wrong_type_name_file_key_and_type(
    tmp_path: Path, text: str, message: str
) -> None:
    key = text.partition(" ")[0]
    path = tmp_path / "config.toml"
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text + "\n")
    assert str(caught.value) == f"{path}: key {key!r}: {message}"


def test_a_long_wrong_string_is_shortened(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'got a string "x{20,60}\.\.\."$'):
        load(tmp_path, f'concurrency = "{"x" * 1000}"\n')


def test_unknown_key_and_bad_toml_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    with pytest.raises(ConfigError, match=f"^{path}: unknown key 'bogus'$"):
        load(tmp_path, "bogus = 1\n")
    with pytest.raises(ConfigError, match=f"^{path}: invalid TOML: "):
        load(tmp_path, "concurrency = \n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_toml_defaults(tmp_path / "missing.toml", KEYS)


def test_methods_are_sent_in_capitals_as_httpx_does() -> None:
    assert Request(method="propfind").method == "PROPFIND"


@pytest.mark.parametrize(
    ("method", "message"),
    [("GE T", "HTTP token"), ("", "HTTP token"), ("GET\r\n", "HTTP token"), ("CONNECT", "--proxy")],
)
def test_a_method_that_is_no_token_is_refused(method: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Request(method=method)


def test_audit_sends_an_origin_unless_one_is_given() -> None:
    from fetcher.audit import AUDIT_ORIGIN
    from fetcher.config import Config

    assert "Origin" not in dict(Request().header_lines())
    assert Request(audit=True).header_lines()[-1] == ("Origin", AUDIT_ORIGIN)
    mine = Request(audit=True, headers=(("origin", "https://mine.example"),))
    assert [h for h in mine.header_lines() if h[0].lower() == "origin"] == [
        ("origin", "https://mine.example")
    ]
    assert mine.origin == "https://mine.example" and Request().origin is None
    assert Request(audit=True).follows_redirects and not Request().follows_redirects
    # Targets without a scheme: http, auto under --audit, and --scheme wins either way.
    assert Config().bare_scheme == "http"
    assert Config(request=Request(audit=True)).bare_scheme == "auto"
    assert Config(scheme="http", request=Request(audit=True)).bare_scheme == "http"
    with pytest.raises(ConfigError, match="audit http port"):
        Request(audit_http_port=0)


def test_min_grade_shows_only_grades_below_it() -> None:
    from dataclasses import replace

    from fetcher.config import Config, Output

    below_b = Output(min_grade="B")
    assert [below_b.shows(200, g) for g in ("A+", "B", "B-", "F", None)] == [
        False, False, True, True, False,
    ]  # fmt: skip
    assert below_b.shows(None, None) is False  # a failure has no grade
    with pytest.raises(ConfigError, match="invalid grade 'E'"):
        Output(min_grade="E")
    with pytest.raises(ConfigError, match="--min-grade needs --audit"):
        Config(output=below_b)
    Config(output=below_b, request=replace(Request(), audit=True))
