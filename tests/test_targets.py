from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher import targets
from fetcher.errors import InvalidInput
from fetcher.targets import Target, is_skipped, parse_target


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param("example.com", Target("example.com", "http", "example.com", 80), id="host"),
        pytest.param(
            "Example.COM:8080", Target("Example.COM:8080", "http", "example.com", 8080), id="port"
        ),
        pytest.param(
            "example.com/go?to=http://x/",
            Target("example.com/go?to=http://x/", "http", "example.com", 80, "/go?to=http://x/"),
            id="scheme-like-text-in-query",
        ),
        pytest.param(
            "https://example.com",
            Target("https://example.com", "https", "example.com", 443),
            id="https-default-port",
        ),
        pytest.param(
            "HTTP://example.com:81/a/b?q=1#frag",
            Target("HTTP://example.com:81/a/b?q=1#frag", "http", "example.com", 81, "/a/b?q=1"),
            id="url-path-query-fragment",
        ),
        pytest.param(
            "example.com?x=1",
            Target("example.com?x=1", "http", "example.com", 80, "/?x=1"),
            id="query-without-path",
        ),
        pytest.param("10.0.0.1", Target("10.0.0.1", "http", "10.0.0.1", 80), id="ipv4"),
        pytest.param("[::1]", Target("[::1]", "http", "::1", 80), id="ipv6"),
        pytest.param("[::1]:8443", Target("[::1]:8443", "http", "::1", 8443), id="ipv6-port"),
        pytest.param(
            "https://[2001:DB8::1]:9/x",
            Target("https://[2001:DB8::1]:9/x", "https", "2001:db8::1", 9, "/x"),
            id="ipv6-url",
        ),
        pytest.param("2001:db8::2", Target("2001:db8::2", "http", "2001:db8::2", 80), id="bare-v6"),
        pytest.param(
            "bücher.example",
            Target("bücher.example", "http", "xn--bcher-kva.example", 80),
            id="idna",
        ),
        pytest.param(
            "_dmarc.example.com",
            Target("_dmarc.example.com", "http", "_dmarc.example.com", 80),
            id="underscore-label",
        ),
        pytest.param(
            "  example.com  \r", Target("example.com", "http", "example.com", 80), id="trimmed"
        ),
        pytest.param("example.com/ä b", None, id="space-in-path-is-invalid"),
        pytest.param(
            "example.com/ä",
            Target("example.com/ä", "http", "example.com", 80, "/%C3%A4"),
            id="non-ascii-path-encoded",
        ),
    ],
)
def test_valid_targets(line: str, expected: Target | None) -> None:
    if expected is None:
        with pytest.raises(InvalidInput):
            parse_target(line)
        return
    assert parse_target(line) == expected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        pytest.param("example.com:0", "port out of range", id="port-zero"),
        pytest.param("example.com:65536", "port out of range", id="port-too-big"),
        pytest.param("example.com:http", "invalid port", id="port-name"),
        pytest.param("example.com:", "invalid port", id="port-empty"),
        pytest.param("ftp://example.com", "unsupported scheme", id="scheme"),
        pytest.param("two words", "whitespace", id="space"),
        pytest.param("[::1", "unclosed", id="open-bracket"),
        pytest.param("::1]", "unmatched", id="close-bracket"),
        pytest.param("[::1]x", "unexpected text", id="after-bracket"),
        pytest.param("[not-v6]:80", "invalid IPv6", id="bad-v6"),
        pytest.param("256.1.1.1", "invalid IPv4", id="octet-too-big"),
        pytest.param("10.01.0.1", "invalid IPv4", id="octet-leading-zero"),
        pytest.param("\u0661\u0660.0.0.1", "invalid IPv4", id="octet-arabic-indic-digits"),
        pytest.param("http://", "empty host", id="empty-host"),
        pytest.param(":80", "empty host", id="port-only"),
        pytest.param("user:pw@example.com", "credentials", id="userinfo"),
        pytest.param("exa$mple.com", "invalid host name", id="bad-char"),
        pytest.param("a..b", "invalid host name", id="empty-label"),
        pytest.param("-bad.example", "invalid host name", id="leading-hyphen"),
        pytest.param("x" * 64 + ".com", "invalid host name", id="long-label"),
        pytest.param("bad\x1b[31m.com", "control", id="escape-sequence"),
        pytest.param("\u2603\u0300.example", "internationalised", id="bad-idna"),
        pytest.param("a" * 9000, "longer than", id="too-long"),
    ],
)
def test_invalid_targets(line: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason) as info:
        parse_target(line)
    assert info.value.kind == "invalid-input"


def test_default_scheme_applies_to_bare_hosts_only() -> None:
    assert parse_target("example.com", "https").port == 443
    assert parse_target("http://example.com", "https").scheme == "http"


@pytest.mark.parametrize("line", ["", "   ", "# comment", "  # indented comment"])
def test_skipped_lines(line: str) -> None:
    assert is_skipped(line)


def test_url_and_authority() -> None:
    assert parse_target("[::1]:8080/x").url == "http://[::1]:8080/x"
    assert parse_target("https://example.com:443").url == "https://example.com/"
    assert parse_target("example.com:8080").authority == "example.com:8080"


def _outcome(parse: Callable[[], Target]) -> Target | str:
    try:
        return parse()
    except InvalidInput as exc:
        return f"InvalidInput: {exc}"


# Pieces that make lines near the fast path's edges: schemes in both cases, names, dotted
# quads good and bad, ports in and out of range, paths plain and not, and stray characters.
_PIECES = st.sampled_from(
    ["http://", "https://", "HTTP://", "ftp://", "://", "a", "Z", "0", "9", "_", "-", ".", "..",
     "1.2.3.4", "256.1.1.1", "01.2.3.4", "www.example.com", "xn--bcher-kva.example", "b\u00fccher",
     ":", ":0", ":80", ":65535", ":65536", ":99999", ":08", "/", "/a", "?", "?q=1", "#f", "%41",
     "@", "[", "]", "[::1]", " ", "\t", "\x00", "\u0663", "a" * 63, "a" * 64, ("a" * 60 + ".") * 5]
)  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(pieces=st.lists(_PIECES, max_size=8), scheme=st.sampled_from(["http", "https"]))
def test_fast_path_makes_the_general_parses_target(pieces: list[str], scheme: str) -> None:
    line = "".join(pieces)
    fast = _outcome(lambda: parse_target(line, scheme))
    general = _outcome(lambda: targets._parse_general(line.strip(), scheme))
    assert fast == general
    if isinstance(fast, Target):
        assert isinstance(general, Target)
        assert (fast.explicit_scheme, fast.explicit_port) == (
            general.explicit_scheme,
            general.explicit_port,
        )
