"""Tests for fetcher/audit.py: MDN HTTP Observatory scoring of response headers.

Every expected (result, score, grade) in TABLE is what MDN's own analyzer gives for the same
headers (mdn/mdn-http-observatory at 94042bb, src/scanner/index.js analyzeScan, with its
Subresource Integrity test held at 0 and an empty HSTS preload list, the two things afetch
cannot judge from headers): the table was checked row by row against that code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.audit import (
    AUDIT_ORIGIN,
    GRADE_CHART,
    GRADES,
    MINIMUM_SCORE_FOR_EXTRA_CREDIT,
    MODIFIERS,
    REDIRECTION_NOT_EVALUATED,
    SRI_NOT_EVALUATED,
    TEST_NAMES,
    Audit,
    HttpProbe,
    audit,
    grade_for,
)

Pairs = list[tuple[str, str]]

# Scores 120 (A+): default-src 'none' (+10) with frame-ancestors (X-Frame-Options via CSP, +5),
# HSTS of a year, nosniff, no-referrer (+5); nothing else set, so nothing else scores.
GOOD: Pairs = [
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
    ("Strict-Transport-Security", "max-age=31536000"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
]
URL = "https://example.com/"
TO_HTTPS = HttpProbe(("http://example.com/", "https://example.com/"))
CSP_NO_FA = "default-src 'none'"  # the same policy without frame-ancestors, for the XFO rows


def swap(name: str, *values: str, base: Pairs = GOOD) -> Pairs:
    """`base` with every `name` field replaced by one field per value (none: removed)."""
    kept = [(n, v) for n, v in base if n.lower() != name.lower()]
    return kept + [(name, v) for v in values]


def plus(*pairs: tuple[str, str], base: Pairs = GOOD) -> Pairs:
    return base + list(pairs)


def cookies(*lines: str, base: Pairs = GOOD) -> Pairs:
    return plus(*(("Set-Cookie", line) for line in lines), base=base)


@dataclass(frozen=True)
class Row:
    """One header set, the test it is about, and what MDN's rules give."""

    id: str
    test: str
    headers: Pairs
    result: str
    score: int
    grade: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def run(self) -> Audit:
        kwargs: dict[str, Any] = {"url": URL, "http_probe": TO_HTTPS, **self.kwargs}
        return audit(self.headers, **kwargs)


CSP = "content-security-policy"
XFO = "x-frame-options"


# Ordered as MDN's tests run; one row at least for every result afetch can give but
# hsts-preloaded and redirection-all-redirects-preloaded (they need the preload list).
TABLE = [
    Row(
        "csp-default-src-none",
        "content-security-policy",
        GOOD,
        "csp-implemented-with-no-unsafe-default-src-none",
        120,
        "A+",
    ),
    Row(
        "csp-no-unsafe",
        "content-security-policy",
        swap(CSP, "default-src 'self'; frame-ancestors 'none'"),
        "csp-implemented-with-no-unsafe",
        115,
        "A+",
    ),
    Row(
        "csp-unsafe-inline-script",
        "content-security-policy",
        swap(CSP, "default-src 'none'; script-src 'unsafe-inline'"),
        "csp-implemented-with-unsafe-inline",
        60,
        "C+",
    ),
    Row(
        "csp-data-in-script",
        "content-security-policy",
        swap(CSP, "default-src 'none'; script-src data:"),
        "csp-implemented-with-unsafe-inline",
        60,
        "C+",
    ),
    Row(
        "csp-object-src-unset",
        "content-security-policy",
        swap(CSP, "script-src 'self'"),
        "csp-implemented-with-unsafe-inline",
        60,
        "C+",
    ),
    Row(
        "csp-object-src-broad",
        "content-security-policy",
        swap(CSP, "default-src 'none'; object-src https:"),
        "csp-implemented-with-unsafe-inline",
        60,
        "C+",
    ),
    Row(
        "csp-insecure-scheme",
        "content-security-policy",
        swap(CSP, "default-src 'none'; script-src http://cdn.example"),
        "csp-implemented-with-insecure-scheme",
        60,
        "C+",
    ),
    Row(
        "csp-insecure-ftp",
        "content-security-policy",
        swap(CSP, "default-src 'none'; script-src ftp://cdn.example"),
        "csp-implemented-with-insecure-scheme",
        60,
        "C+",
    ),
    Row(
        "csp-insecure-report-uri",
        "content-security-policy",
        swap(CSP, "default-src 'none'; report-uri http://r.example/"),
        "csp-implemented-with-insecure-scheme",
        60,
        "C+",
    ),
    Row(
        "csp-unsafe-eval",
        "content-security-policy",
        swap(CSP, "default-src 'none'; script-src 'unsafe-eval'"),
        "csp-implemented-with-unsafe-eval",
        70,
        "B",
    ),
    Row(
        "csp-passive-insecure",
        "content-security-policy",
        swap(CSP, "default-src 'none'; img-src http:"),
        "csp-implemented-with-insecure-scheme-in-passive-content-only",
        70,
        "B",
    ),
    Row(
        "csp-passive-media",
        "content-security-policy",
        swap(CSP, "default-src 'none'; img-src https:; media-src http://v.example"),
        "csp-implemented-with-insecure-scheme-in-passive-content-only",
        70,
        "B",
    ),
    Row(
        "csp-passive-over-http",
        "content-security-policy",
        swap(CSP, "default-src 'none'; img-src http:"),
        "csp-implemented-with-no-unsafe-default-src-none",
        60,
        "C+",
        {"url": "http://example.com/"},
    ),
    Row(
        "csp-style-only",
        "content-security-policy",
        swap(CSP, "default-src 'none'; style-src 'unsafe-inline'"),
        "csp-implemented-with-unsafe-inline-in-style-src-only",
        80,
        "B+",
    ),
    Row(
        "csp-style-broad",
        "content-security-policy",
        swap(CSP, "default-src 'none'; style-src *"),
        "csp-implemented-with-unsafe-inline-in-style-src-only",
        80,
        "B+",
    ),
    Row(
        "csp-duplicate-directive",
        "content-security-policy",
        swap(CSP, "default-src 'none'; default-src 'none'"),
        "csp-header-invalid",
        55,
        "C",
    ),
    Row(
        "csp-duplicate-after-other",
        "content-security-policy",
        swap(CSP, "default-src 'none'; img-src 'self'; DEFAULT-SRC 'none'"),
        "csp-header-invalid",
        55,
        "C",
    ),
    Row(
        "csp-duplicate-report-uri",
        "content-security-policy",
        swap(CSP, "default-src 'none'; report-uri /a; report-uri /b"),
        "csp-implemented-but-duplicate-directives",
        80,
        "B+",
    ),
    Row(
        "csp-duplicate-report-uri-failing",
        "content-security-policy",
        swap(CSP, "script-src 'unsafe-inline'; report-uri /a; report-uri /b"),
        "csp-implemented-with-unsafe-inline",
        60,
        "C+",
    ),
    Row(
        "csp-unsafe-inline-with-nonce",
        "content-security-policy",
        swap(CSP, "default-src 'none'; script-src 'unsafe-inline' 'nonce-abc'"),
        "csp-implemented-with-no-unsafe-default-src-none",
        80,
        "B+",
    ),
    Row(
        "csp-unsafe-inline-with-hash",
        "content-security-policy",
        swap(
            CSP,
            "object-src 'none'; style-src 'self'; script-src 'unsafe-inline' "
            "'sha256-hqBEA/HXB3aJU2FgOnYN8rkAgEVgyfi3Vs1j2/XMPBA='",
        ),
        "csp-implemented-with-no-unsafe",
        80,
        "B+",
    ),
    Row(
        "csp-unsafe-inline-style-with-nonce",
        "content-security-policy",
        swap(CSP, "default-src https://example.com; style-src 'unsafe-inline' 'nonce-abc123'"),
        "csp-implemented-with-no-unsafe",
        80,
        "B+",
    ),
    Row(
        "csp-nonce-on-default-src",
        "content-security-policy",
        swap(CSP, "default-src 'unsafe-inline' 'nonce-abc'"),
        "csp-implemented-with-no-unsafe",
        80,
        "B+",
    ),
    Row(
        "csp-strict-dynamic-no-nonce",
        "content-security-policy",
        swap(CSP, "default-src 'none'; script-src 'strict-dynamic'"),
        "csp-header-invalid",
        55,
        "C",
    ),
    Row(
        "csp-strict-dynamic-drops-broad",
        "content-security-policy",
        swap(
            CSP,
            "object-src 'none'; script-src 'strict-dynamic' 'nonce-abc' https: 'unsafe-inline'; "
            "style-src 'none'",
        ),
        "csp-implemented-with-no-unsafe",
        80,
        "B+",
    ),
    Row(
        "csp-default-src-empty-is-none",
        "content-security-policy",
        swap(CSP, "default-src"),
        "csp-implemented-with-no-unsafe-default-src-none",
        80,
        "B+",
    ),
    Row(
        "csp-default-src-none-and-self",
        "content-security-policy",
        swap(CSP, "default-src 'none' 'self'"),
        "csp-implemented-with-no-unsafe",
        80,
        "B+",
    ),
    Row(
        "csp-too-short", "content-security-policy", swap(CSP, "defa"), "csp-header-invalid", 55, "C"
    ),
    Row("csp-empty-value", "content-security-policy", swap(CSP, ""), "csp-header-invalid", 55, "C"),
    Row(
        "csp-blank-value",
        "content-security-policy",
        swap(CSP, "   "),
        "csp-header-invalid",
        55,
        "C",
    ),
    Row(
        "csp-only-semicolons",
        "content-security-policy",
        swap(CSP, ";;;;;;"),
        "csp-not-implemented",
        55,
        "C",
    ),
    Row("csp-missing", "content-security-policy", swap(CSP), "csp-not-implemented", 55, "C"),
    Row(
        "csp-report-only",
        "content-security-policy",
        swap(CSP, base=plus(("Content-Security-Policy-Report-Only", "default-src 'none'"))),
        "csp-not-implemented-but-reporting-enabled",
        55,
        "C",
    ),
    Row(
        "csp-two-headers",
        "content-security-policy",
        swap(CSP, "default-src 'none'", "script-src 'self'"),
        "csp-implemented-with-no-unsafe-default-src-none",
        80,
        "B+",
    ),
    Row(
        "csp-two-policies-comma",
        "content-security-policy",
        swap(CSP, "default-src 'self', default-src 'none'"),
        "csp-implemented-with-no-unsafe-default-src-none",
        80,
        "B+",
    ),
    Row(
        "csp-two-policies-intersect",
        "content-security-policy",
        swap(
            CSP,
            "default-src 'self' https://a.example; object-src 'none'",
            "default-src https://a.example/x; object-src 'none'",
        ),
        "csp-implemented-with-no-unsafe-default-src-none",
        80,
        "B+",
    ),
    Row(  # a prefix within the first policy drops https://a.example/x; nothing is left in both
        "csp-two-policies-prefix",
        CSP,
        swap(
            CSP,
            "default-src 'self' https://a.example https://a.example/x; object-src 'none'",
            "default-src https://a.example/x; object-src 'none'",
        ),
        "csp-implemented-with-no-unsafe-default-src-none",
        80,
        "B+",
    ),
    Row(
        "csp-trailing-comma",
        "content-security-policy",
        swap(CSP, "default-src 'none',"),
        "csp-header-invalid",
        55,
        "C",
    ),
    Row(
        "csp-upper-case-source",
        "content-security-policy",
        swap(CSP, "default-src 'UNSAFE-INLINE'"),
        "csp-implemented-with-unsafe-inline",
        60,
        "C+",
    ),
    Row(
        "csp-prefix-neighbour-dropped",
        "content-security-policy",
        swap(CSP, "object-src 'none'; style-src 'self'; script-src ' 'unsafe-inline'"),
        "csp-implemented-with-no-unsafe",
        80,
        "B+",
    ),
    Row(
        "csp-empty-directives",
        "content-security-policy",
        swap(CSP, "default-src 'none';;; ;;;style-src 'self' 'unsafe-inline'"),
        "csp-implemented-with-unsafe-inline-in-style-src-only",
        80,
        "B+",
    ),
    Row(
        "csp-frame-ancestors-star",
        "x-frame-options",
        swap(CSP, "default-src 'self'; frame-ancestors *"),
        "x-frame-options-implemented-via-csp",
        115,
        "A+",
    ),
    Row(
        "csp-invalid-keeps-xfo",
        "x-frame-options",
        swap(CSP, "defa", base=plus(("X-Frame-Options", "DENY"))),
        "x-frame-options-sameorigin-or-deny",
        75,
        "B",
    ),
    Row(
        "cookie-all-good",
        "cookies",
        cookies("sessionid=1; Secure; HttpOnly; SameSite=Lax"),
        "cookies-secure-with-httponly-sessions-and-samesite",
        125,
        "A+",
    ),
    Row(
        "cookie-no-samesite",
        "cookies",
        cookies("sessionid=1; Secure; HttpOnly"),
        "cookies-secure-with-httponly-sessions",
        120,
        "A+",
    ),
    Row(
        "cookie-samesite-strict-upper",
        "cookies",
        cookies("id=1; Secure; SameSite=STRICT"),
        "cookies-secure-with-httponly-sessions-and-samesite",
        125,
        "A+",
    ),
    Row(
        "cookie-samesite-none-secure",
        "cookies",
        cookies("id=1; Secure; SameSite=None"),
        "cookies-secure-with-httponly-sessions-and-samesite",
        125,
        "A+",
    ),
    Row(
        "cookie-not-secure-hsts",
        "cookies",
        cookies("theme=dark"),
        "cookies-without-secure-flag-but-protected-by-hsts",
        115,
        "A+",
    ),
    Row(
        "cookie-session-not-secure-hsts",
        "cookies",
        cookies("sessionid=1; HttpOnly"),
        "cookies-session-without-secure-flag-but-protected-by-hsts",
        110,
        "A+",
    ),
    Row(
        "cookie-not-secure",
        "cookies",
        cookies("theme=dark", base=swap("Strict-Transport-Security")),
        "cookies-without-secure-flag",
        60,
        "C+",
    ),
    Row(
        "cookie-not-secure-short-hsts",
        "cookies",
        cookies("theme=dark", base=swap("Strict-Transport-Security", "max-age=60")),
        "cookies-without-secure-flag",
        70,
        "B",
    ),
    Row(
        "cookie-session-not-secure",
        "cookies",
        cookies("PHPSESSID=1; HttpOnly", base=swap("Strict-Transport-Security")),
        "cookies-session-without-secure-flag",
        40,
        "D+",
    ),
    Row(
        "cookie-samesite-bogus",
        "cookies",
        cookies("id=1; Secure; SameSite=Foo"),
        "cookies-samesite-flag-invalid",
        80,
        "B+",
    ),
    Row(
        "cookie-samesite-empty",
        "cookies",
        cookies("id=1; Secure; SameSite"),
        "cookies-samesite-flag-invalid",
        80,
        "B+",
    ),
    Row(
        "cookie-samesite-none-insecure",
        "cookies",
        cookies("id=1; SameSite=None"),
        "cookies-samesite-flag-invalid",
        80,
        "B+",
    ),
    Row(
        "cookie-anticsrf",
        "cookies",
        cookies("csrftoken=1; Secure"),
        "cookies-anticsrf-without-samesite-flag",
        80,
        "B+",
    ),
    Row(
        "cookie-anticsrf-samesite",
        "cookies",
        cookies("csrftoken=1; Secure; SameSite=Lax"),
        "cookies-secure-with-httponly-sessions-and-samesite",
        125,
        "A+",
    ),
    Row(
        "cookie-session-no-httponly",
        "cookies",
        cookies("sessionid=1; Secure; SameSite=Strict"),
        "cookies-session-without-httponly-flag",
        70,
        "B",
    ),
    Row(
        "cookie-login-no-httponly",
        "cookies",
        cookies("LoginToken=1; Secure; SameSite=Strict"),
        "cookies-session-without-httponly-flag",
        70,
        "B",
    ),
    Row(
        "cookie-worst-wins",
        "cookies",
        cookies("a=1; Secure; SameSite=Lax", "loginid=1; Secure"),
        "cookies-session-without-httponly-flag",
        70,
        "B",
    ),
    Row(
        "cookie-host-prefix-ok",
        "cookies",
        cookies("__Host-sess=1; Secure; HttpOnly; Path=/; SameSite=Strict"),
        "cookies-secure-with-httponly-sessions-and-samesite",
        125,
        "A+",
    ),
    Row(
        "cookie-host-prefix-domain",
        "cookies",
        cookies("__Host-sess=1; Secure; Path=/; Domain=example.com"),
        "cookies-not-found",
        120,
        "A+",
    ),
    Row(
        "cookie-host-prefix-insecure",
        "cookies",
        cookies("__Host-id=1; Path=/"),
        "cookies-not-found",
        120,
        "A+",
    ),
    Row(
        "cookie-host-prefix-path",
        "cookies",
        cookies("__Host-id=1; Secure; Path=/app"),
        "cookies-not-found",
        120,
        "A+",
    ),
    Row(
        "cookie-host-prefix-default-path",
        "cookies",
        cookies("__Host-id=1; Secure"),
        "cookies-not-found",
        120,
        "A+",
        {"url": "https://example.com/a/b"},
    ),
    Row(
        "cookie-secure-prefix-insecure",
        "cookies",
        cookies("__Secure-id=1"),
        "cookies-not-found",
        120,
        "A+",
    ),
    Row(
        "cookie-secure-prefix-ok",
        "cookies",
        cookies("__Secure-id=1; Secure; SameSite=Lax"),
        "cookies-secure-with-httponly-sessions-and-samesite",
        125,
        "A+",
    ),
    Row(
        "cookie-other-domain",
        "cookies",
        cookies("sessionid=1; Domain=other.example"),
        "cookies-not-found",
        120,
        "A+",
    ),
    Row(
        "cookie-parent-domain",
        "cookies",
        cookies("sessionid=1; Domain=.example.com"),
        "cookies-session-without-httponly-flag",
        70,
        "B",
        {"url": "https://www.example.com/"},
    ),
    Row(
        "cookie-domain-dot-ignored",
        "cookies",
        cookies("sessionid=1; Secure; Domain=."),
        "cookies-session-without-httponly-flag",
        70,
        "B",
    ),
    Row(
        "cookie-public-suffix",
        "cookies",
        cookies("sessionid=1; Domain=com"),
        "cookies-not-found",
        120,
        "A+",
    ),
    Row(
        "cookie-expired-session",
        "cookies",
        cookies("sessionid=; Max-Age=0"),
        "cookies-session-without-httponly-flag",
        70,
        "B",
    ),
    Row(
        "cookie-heroku-affinity",
        "cookies",
        cookies("heroku-session-affinity=1"),
        "cookies-not-found",
        120,
        "A+",
    ),
    Row("cookie-no-name", "cookies", cookies("=1; Secure"), "cookies-not-found", 120, "A+"),
    Row("cookie-no-equals", "cookies", cookies("sessionid"), "cookies-not-found", 120, "A+"),
    Row(
        "cookie-dropped-bad-samesite",
        "cookies",
        cookies("=x; SameSite=Bogus"),
        "cookies-not-found",
        120,
        "A+",
    ),
    Row(
        "cookie-control-char", "cookies", cookies("sessionid=a\tb"), "cookies-not-found", 120, "A+"
    ),
    Row(
        "cookie-last-wins",
        "cookies",
        cookies("sessionid=1", "sessionid=2; Secure; HttpOnly; SameSite=Lax"),
        "cookies-secure-with-httponly-sessions-and-samesite",
        125,
        "A+",
    ),
    Row(
        "cookie-two-paths",
        "cookies",
        cookies("sessionid=1; Path=/a", "sessionid=2; Secure; HttpOnly; SameSite=Lax"),
        "cookies-session-without-httponly-flag",
        70,
        "B",
    ),
    Row(
        "cookie-over-http",
        "cookies",
        cookies("sessionid=1; Secure; HttpOnly; SameSite=Lax"),
        "cookies-secure-with-httponly-sessions-and-samesite",
        80,
        "B+",
        {"url": "http://example.com/"},
    ),
    Row(
        "hsts-six-months-exactly",
        "strict-transport-security",
        swap("Strict-Transport-Security", "max-age=15552000"),
        "hsts-implemented-max-age-at-least-six-months",
        120,
        "A+",
    ),
    Row(
        "hsts-six-months-less-one",
        "strict-transport-security",
        swap("Strict-Transport-Security", "max-age=15551999"),
        "hsts-implemented-max-age-less-than-six-months",
        110,
        "A+",
    ),
    Row(
        "hsts-182-days",
        "strict-transport-security",
        swap("Strict-Transport-Security", "max-age=15768000; includeSubDomains; preload"),
        "hsts-implemented-max-age-at-least-six-months",
        120,
        "A+",
    ),
    Row(
        "hsts-zero",
        "strict-transport-security",
        swap("Strict-Transport-Security", "max-age=0"),
        "hsts-implemented-max-age-less-than-six-months",
        110,
        "A+",
    ),
    Row(
        "hsts-missing",
        "strict-transport-security",
        swap("Strict-Transport-Security"),
        "hsts-not-implemented",
        80,
        "B+",
    ),
    Row(
        "hsts-no-max-age",
        "strict-transport-security",
        swap("Strict-Transport-Security", "includeSubDomains; preload"),
        "hsts-header-invalid",
        80,
        "B+",
    ),
    Row(
        "hsts-empty",
        "strict-transport-security",
        swap("Strict-Transport-Security", ""),
        "hsts-header-invalid",
        80,
        "B+",
    ),
    Row(
        "hsts-twice",
        "strict-transport-security",
        swap("Strict-Transport-Security", "max-age=31536000", "max-age=31536000"),
        "hsts-header-invalid",
        80,
        "B+",
    ),
    Row(
        "hsts-spaced-equals",
        "strict-transport-security",
        swap("Strict-Transport-Security", "max-age = 31536000"),
        "hsts-header-invalid",
        80,
        "B+",
    ),
    Row(
        "hsts-upper-case",
        "strict-transport-security",
        swap("Strict-Transport-Security", "MAX-AGE=31536000; INCLUDESUBDOMAINS"),
        "hsts-implemented-max-age-at-least-six-months",
        120,
        "A+",
    ),
    Row(
        "hsts-quoted",
        "strict-transport-security",
        swap("Strict-Transport-Security", 'max-age="31536000"'),
        "hsts-implemented-max-age-at-least-six-months",
        120,
        "A+",
    ),
    Row(
        "hsts-trailing-junk",
        "strict-transport-security",
        swap("Strict-Transport-Security", "max-age=31536000abc"),
        "hsts-implemented-max-age-at-least-six-months",
        120,
        "A+",
    ),
    Row(
        "hsts-last-max-age",
        "strict-transport-security",
        swap("Strict-Transport-Security", "max-age=31536000; max-age=60"),
        "hsts-implemented-max-age-less-than-six-months",
        110,
        "A+",
    ),
    Row(
        "hsts-negative",
        "strict-transport-security",
        swap("Strict-Transport-Security", "max-age=-1"),
        "hsts-implemented-max-age-less-than-six-months",
        110,
        "A+",
    ),
    Row(
        "hsts-over-http",
        "strict-transport-security",
        GOOD,
        "hsts-not-implemented-no-https",
        80,
        "B+",
        {"url": "http://example.com/"},
    ),
    Row(
        "hsts-unverified",
        "strict-transport-security",
        GOOD,
        "hsts-invalid-cert",
        80,
        "B+",
        {"tls_verified": False},
    ),
    Row(
        "xcto-missing",
        "x-content-type-options",
        swap("X-Content-Type-Options"),
        "x-content-type-options-not-implemented",
        115,
        "A+",
    ),
    Row(
        "xcto-empty",
        "x-content-type-options",
        swap("X-Content-Type-Options", ""),
        "x-content-type-options-not-implemented",
        115,
        "A+",
    ),
    Row(
        "xcto-mixed-case",
        "x-content-type-options",
        swap("X-Content-Type-Options", " NoSniff "),
        "x-content-type-options-nosniff",
        120,
        "A+",
    ),
    Row(
        "xcto-twice",
        "x-content-type-options",
        swap("X-Content-Type-Options", "nosniff", "nosniff"),
        "x-content-type-options-header-invalid",
        115,
        "A+",
    ),
    Row(
        "xcto-bogus",
        "x-content-type-options",
        swap("X-Content-Type-Options", "sniff"),
        "x-content-type-options-header-invalid",
        115,
        "A+",
    ),
    Row(
        "xfo-deny",
        "x-frame-options",
        plus(("X-Frame-Options", "DENY"), base=swap(CSP, CSP_NO_FA)),
        "x-frame-options-sameorigin-or-deny",
        120,
        "A+",
    ),
    Row(
        "xfo-sameorigin",
        "x-frame-options",
        plus(("X-Frame-Options", "sameorigin"), base=swap(CSP, CSP_NO_FA)),
        "x-frame-options-sameorigin-or-deny",
        120,
        "A+",
    ),
    Row(
        "xfo-allow-from",
        "x-frame-options",
        plus(("X-Frame-Options", "ALLOW-FROM https://example.net/"), base=swap(CSP, CSP_NO_FA)),
        "x-frame-options-allow-from-origin",
        115,
        "A+",
    ),
    Row(
        "xfo-missing",
        "x-frame-options",
        swap(CSP, CSP_NO_FA),
        "x-frame-options-not-implemented",
        80,
        "B+",
    ),
    Row(
        "xfo-twice",
        "x-frame-options",
        plus(("X-Frame-Options", "DENY"), ("X-Frame-Options", "DENY"), base=swap(CSP, CSP_NO_FA)),
        "x-frame-options-header-invalid",
        80,
        "B+",
    ),
    Row(
        "xfo-bogus",
        "x-frame-options",
        plus(("X-Frame-Options", "ALLOWALL"), base=swap(CSP, CSP_NO_FA)),
        "x-frame-options-header-invalid",
        80,
        "B+",
    ),
    Row(
        "referrer-strict-origin-when-cross-origin",
        "referrer-policy",
        swap("Referrer-Policy", "strict-origin-when-cross-origin"),
        "referrer-policy-private",
        120,
        "A+",
    ),
    Row(
        "referrer-unsafe-url",
        "referrer-policy",
        swap("Referrer-Policy", "unsafe-url"),
        "referrer-policy-unsafe",
        110,
        "A+",
    ),
    Row(
        "referrer-last-wins",
        "referrer-policy",
        swap("Referrer-Policy", "no-referrer, unsafe-url"),
        "referrer-policy-unsafe",
        110,
        "A+",
    ),
    Row(
        "referrer-last-known-wins",
        "referrer-policy",
        swap("Referrer-Policy", "unsafe-url", "Strict-Origin, bogus"),
        "referrer-policy-private",
        120,
        "A+",
    ),
    Row(
        "referrer-bogus",
        "referrer-policy",
        swap("Referrer-Policy", "bogus"),
        "referrer-policy-header-invalid",
        110,
        "A+",
    ),
    Row(
        "referrer-empty",
        "referrer-policy",
        swap("Referrer-Policy", ""),
        "referrer-policy-header-invalid",
        110,
        "A+",
    ),
    Row(
        "referrer-missing",
        "referrer-policy",
        swap("Referrer-Policy"),
        "referrer-policy-not-implemented",
        115,
        "A+",
    ),
    Row(
        "coop-same-origin",
        "cross-origin-opener-policy",
        plus(("Cross-Origin-Opener-Policy", "same-origin")),
        "coop-implemented-with-same-origin",
        130,
        "A+",
    ),
    Row(
        "coop-allow-popups",
        "cross-origin-opener-policy",
        plus(("Cross-Origin-Opener-Policy", "same-origin-allow-popups")),
        "coop-implemented-with-same-origin-allow-popups",
        130,
        "A+",
    ),
    Row(
        "coop-noopener",
        "cross-origin-opener-policy",
        plus(("Cross-Origin-Opener-Policy", "noopener-allow-popups")),
        "coop-implemented-with-noopener-allow-popups",
        130,
        "A+",
    ),
    Row(
        "coop-unsafe-none",
        "cross-origin-opener-policy",
        plus(("Cross-Origin-Opener-Policy", "unsafe-none")),
        "coop-implemented-with-unsafe-none",
        120,
        "A+",
    ),
    Row(
        "coop-report-to",
        "cross-origin-opener-policy",
        plus(("Cross-Origin-Opener-Policy", 'same-origin; report-to="coop"')),
        "coop-implemented-with-same-origin",
        130,
        "A+",
    ),
    Row(
        "coop-case",
        "cross-origin-opener-policy",
        plus(("Cross-Origin-Opener-Policy", "Same-Origin")),
        "coop-header-invalid",
        115,
        "A+",
    ),
    Row(
        "coop-quoted",
        "cross-origin-opener-policy",
        plus(("Cross-Origin-Opener-Policy", '"same-origin"')),
        "coop-header-invalid",
        115,
        "A+",
    ),
    Row(
        "coop-twice",
        "cross-origin-opener-policy",
        plus(
            ("Cross-Origin-Opener-Policy", "same-origin"),
            ("Cross-Origin-Opener-Policy", "same-origin"),
        ),
        "coop-header-invalid",
        115,
        "A+",
    ),
    Row(
        "coop-bad-param",
        "cross-origin-opener-policy",
        plus(("Cross-Origin-Opener-Policy", "same-origin; Report-To=x")),
        "coop-header-invalid",
        115,
        "A+",
    ),
    Row(
        "coop-empty",
        "cross-origin-opener-policy",
        plus(("Cross-Origin-Opener-Policy", "")),
        "coop-not-implemented",
        120,
        "A+",
    ),
    Row(
        "coep-require-corp",
        "cross-origin-embedder-policy",
        plus(("Cross-Origin-Embedder-Policy", "require-corp")),
        "coep-implemented-with-require-corp",
        130,
        "A+",
    ),
    Row(
        "coep-credentialless",
        "cross-origin-embedder-policy",
        plus(("Cross-Origin-Embedder-Policy", "credentialless")),
        "coep-implemented-with-credentialless",
        130,
        "A+",
    ),
    Row(
        "coep-unsafe-none",
        "cross-origin-embedder-policy",
        plus(("Cross-Origin-Embedder-Policy", "unsafe-none")),
        "coep-implemented-with-unsafe-none",
        120,
        "A+",
    ),
    Row(
        "coep-bogus",
        "cross-origin-embedder-policy",
        plus(("Cross-Origin-Embedder-Policy", "require-corp!")),
        "coep-header-invalid",
        115,
        "A+",
    ),
    Row(
        "corp-same-site",
        "cross-origin-resource-policy",
        plus(("Cross-Origin-Resource-Policy", "same-site")),
        "corp-implemented-with-same-site",
        130,
        "A+",
    ),
    Row(
        "corp-same-origin-upper",
        "cross-origin-resource-policy",
        plus(("Cross-Origin-Resource-Policy", "SAME-ORIGIN")),
        "corp-implemented-with-same-origin",
        130,
        "A+",
    ),
    Row(
        "corp-cross-origin",
        "cross-origin-resource-policy",
        plus(("Cross-Origin-Resource-Policy", "cross-origin")),
        "corp-implemented-with-cross-origin",
        120,
        "A+",
    ),
    Row(
        "corp-bogus",
        "cross-origin-resource-policy",
        plus(("Cross-Origin-Resource-Policy", "same-site, same-site")),
        "corp-header-invalid",
        115,
        "A+",
    ),
    Row(
        "cors-public",
        "cross-origin-resource-sharing",
        plus(("Access-Control-Allow-Origin", "*")),
        "cross-origin-resource-sharing-implemented-with-public-access",
        120,
        "A+",
    ),
    Row(
        "cors-public-credentials",
        "cross-origin-resource-sharing",
        plus(("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Credentials", "true")),
        "cross-origin-resource-sharing-implemented-with-public-access",
        120,
        "A+",
    ),
    Row(
        "cors-restricted",
        "cross-origin-resource-sharing",
        plus(("Access-Control-Allow-Origin", "https://example.com")),
        "cross-origin-resource-sharing-implemented-with-restricted-access",
        120,
        "A+",
    ),
    Row(
        "cors-reflected-credentials",
        "cross-origin-resource-sharing",
        plus(
            ("Access-Control-Allow-Origin", AUDIT_ORIGIN),
            ("Access-Control-Allow-Credentials", " TRUE"),
        ),
        "cross-origin-resource-sharing-implemented-with-universal-access",
        50,
        "C",
    ),
    Row(
        "cors-reflected-no-credentials",
        "cross-origin-resource-sharing",
        plus(("Access-Control-Allow-Origin", AUDIT_ORIGIN)),
        "cross-origin-resource-sharing-implemented-with-restricted-access",
        120,
        "A+",
    ),
    Row(
        "cors-separate-response",
        "cross-origin-resource-sharing",
        GOOD,
        "cross-origin-resource-sharing-implemented-with-universal-access",
        50,
        "C",
        {
            "cors_headers": [
                ("Access-Control-Allow-Origin", "https://o.example"),
                ("Access-Control-Allow-Credentials", "true"),
            ],
            "origin": "https://o.example",
        },
    ),
    Row(
        "redirect-missing",
        "redirection",
        GOOD,
        "redirection-missing",
        80,
        "B+",
        {"http_probe": HttpProbe(("http://example.com/",))},
    ),
    Row(
        "redirect-no-http",
        "redirection",
        GOOD,
        "redirection-not-needed-no-http",
        120,
        "A+",
        {"http_probe": HttpProbe(())},
    ),
    Row(
        "redirect-not-to-https",
        "redirection",
        GOOD,
        "redirection-not-to-https",
        80,
        "B+",
        {"http_probe": HttpProbe(("http://example.com/", "http://www.example.com/"))},
    ),
    Row(
        "redirect-http-first",
        "redirection",
        GOOD,
        "redirection-not-to-https-on-initial-redirection",
        110,
        "A+",
        {
            "http_probe": HttpProbe(
                ("http://example.com/", "http://www.example.com/", "https://www.example.com/")
            )
        },
    ),
    Row(
        "redirect-off-host",
        "redirection",
        GOOD,
        "redirection-off-host-from-http",
        115,
        "A+",
        {"http_probe": HttpProbe(("http://example.com/", "https://www.example.com/"))},
    ),
    Row(
        "redirect-then-elsewhere",
        "redirection",
        GOOD,
        "redirection-to-https",
        120,
        "A+",
        {
            "http_probe": HttpProbe(
                ("http://example.com/", "https://example.com/", "https://www.example.com/")
            )
        },
    ),
    Row(
        "redirect-invalid-cert",
        "redirection",
        GOOD,
        "redirection-invalid-cert",
        80,
        "B+",
        {"http_probe": HttpProbe(("http://example.com/", "https://example.com/"), verified=False)},
    ),
    Row(
        "bonus-at-90",
        "strict-transport-security",
        swap("Strict-Transport-Security", "max-age=86400"),
        "hsts-implemented-max-age-less-than-six-months",
        110,
        "A+",
    ),
    Row(
        "bonus-below-90",
        "x-content-type-options",
        swap("X-Content-Type-Options", base=swap("Strict-Transport-Security", "max-age=86400")),
        "x-content-type-options-not-implemented",
        85,
        "A-",
    ),
    Row(
        "floor-at-zero",
        "cookies",
        [
            ("Set-Cookie", "sessionid=1"),
            ("Access-Control-Allow-Origin", AUDIT_ORIGIN),
            ("Access-Control-Allow-Credentials", "true"),
        ],
        "cookies-session-without-secure-flag",
        0,
        "F",
        {"url": "http://example.com/", "http_probe": HttpProbe(("http://example.com/",))},
    ),
    Row("nothing-set", "content-security-policy", [], "csp-not-implemented", 30, "D"),
]


@pytest.mark.parametrize("row", TABLE, ids=[row.id for row in TABLE])
def test_table_gives_mdn_verdict(row: Row) -> None:
    graded = row.run()
    test = graded.tests[row.test]
    assert (test.result, test.modifier) == (row.result, MODIFIERS[row.result])
    assert (graded.score, graded.grade) == (row.score, row.grade)


def test_table_reaches_every_result_and_modifier() -> None:
    reached = {row.result for row in TABLE}
    reached |= {t.result for row in TABLE for t in row.run().tests.values()}
    unreachable = {"hsts-preloaded", "redirection-all-redirects-preloaded"}  # no preload list
    # Every row has a plain-http probe; test_not_evaluated_tests_score_zero has none.
    assert reached == set(MODIFIERS) - unreachable - {REDIRECTION_NOT_EVALUATED}
    assert {MODIFIERS[r] for r in reached} == set(MODIFIERS.values())


# mozilla.org's Content-Security-Policy (from the fixtures cited below), sent twice there:
# enforced and report-only.
MOZILLA_CSP = (
    "frame-src 'self' accounts.firefox.com js.stripe.com www.google-analytics.com "
    "www.googletagmanager.com www.youtube.com; script-src 'self' 'unsafe-eval' "
    "'unsafe-inline' cdn.transcend.io js.stripe.com s.ytimg.com tagmanager.google.com "
    "transcend-cdn.com www.google-analytics.com www.googletagmanager.com www.mozilla.org "
    "www.youtube.com; form-action 'self' "
    "https://abdri3ttkb.execute-api.us-east-2.amazonaws.com https://accounts.firefox.com/ "
    "https://basket.mozilla.org; font-src 'self' www.mozilla.org; style-src 'self' "
    "'unsafe-inline' cdn.transcend.io transcend-cdn.com www.mozilla.org; default-src "
    "'self' *.mozilla.org; frame-ancestors 'none'; connect-src 'self' cdn.transcend.io "
    "https://abdri3ttkb.execute-api.us-east-2.amazonaws.com https://accounts.firefox.com/ "
    "https://basket.mozilla.org o1069899.ingest.sentry.io o1069899.sentry.io "
    "region1.google-analytics.com telemetry.transcend.io telemetry.us.transcend.io "
    "transcend-cdn.com www.google-analytics.com www.googletagmanager.com "
    "www.mozilla.org/submit/bedrock/; upgrade-insecure-requests; img-src 'self' "
    "blog.mozilla.org data: images.ctfassets.net www.google-analytics.com "
    "www.googletagmanager.com www.mozilla.org; object-src 'none'; media-src 'self' "
    "assets.mozilla.net videos.cdn.mozilla.net www.mozilla.org; base-uri 'none'"
)

# Real-world header sets: MDN's own scanner fixtures (mdn/mdn-http-observatory
# test/fixtures/*.json, captured 2026-01-12; test/scanner.test.js holds MDN's grades for them).
MOZILLA_ORG = [
    ("connection", "close"),
    ("content-length", "8079"),
    ("x-content-type-options", "nosniff"),
    (
        "content-security-policy",
        MOZILLA_CSP,
    ),
    ("etag", '"89e74587bee49c2a6d3f9cde8d36fdb7"'),
    ("content-type", "text/html; charset=utf-8"),
    ("expires", "Mon, 12 Jan 2026 15:06:44 GMT"),
    ("cross-origin-opener-policy", "same-origin"),
    ("strict-transport-security", "max-age=31536000"),
    ("x-backend-server", "bedrock-fb94c9895-v229v.gcp-us-west1"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("server", "granian"),
    ("x-clacks-overhead", "GNU Terry Pratchett"),
    ("via", "1.1 google, 1.1 varnish, 1.1 varnish"),
    (
        "content-security-policy-report-only",
        MOZILLA_CSP,
    ),
    ("cache-control", "max-age=600"),
    ("x-frame-options", "DENY"),
    ("accept-ranges", "bytes"),
    ("age", "287"),
    ("date", "Mon, 12 Jan 2026 15:50:39 GMT"),
    ("x-served-by", "cache-par-lfpb1150060-PAR, cache-par-lfpg1960095-PAR"),
    ("x-cache", "MISS, HIT"),
    ("x-cache-hits", "0, 0"),
    ("x-timer", "S1768233039.399682,VS0,VE1"),
    ("vary", "Accept-Language, Accept-Encoding"),
]
OBSERVATORY_MOZILLA_ORG = [
    ("connection", "close"),
    ("content-length", "17984"),
    ("x-goog-stored-content-length", "118068"),
    ("x-goog-metageneration", "1"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("expires", "Mon, 12 Jan 2026 02:23:13 GMT"),
    ("x-goog-hash", "crc32c=s3WvUg==, md5=SZwioIFHOFyuGFVNhK8gTQ=="),
    (
        "content-security-policy",
        "default-src 'self'; script-src 'report-sample' 'self' 'wasm-unsafe-eval' "
        "https://www.google-analytics.com/analytics.js https://*.googletagmanager.com "
        "assets.codepen.io production-assets.codepen.io https://js.stripe.com "
        "'sha256-XNBp89FG76amD8BqrJzyflxOF9PaWPqPqvJfKZPCv7M=' "
        "'sha256-YCNoU9DNiinACbd8n6UPyB/8vj0kXvhkOni9/06SuYw=' "
        "'sha256-PZjP7OR6mBEtnvXIZfCZ5PuOlxoDF1LDZL8aj8c42rw='; script-src-elem "
        "'report-sample' 'self' 'wasm-unsafe-eval' "
        "https://www.google-analytics.com/analytics.js https://*.googletagmanager.com "
        "assets.codepen.io production-assets.codepen.io https://js.stripe.com "
        "'sha256-XNBp89FG76amD8BqrJzyflxOF9PaWPqPqvJfKZPCv7M=' "
        "'sha256-YCNoU9DNiinACbd8n6UPyB/8vj0kXvhkOni9/06SuYw=' "
        "'sha256-PZjP7OR6mBEtnvXIZfCZ5PuOlxoDF1LDZL8aj8c42rw='; style-src 'report-sample' "
        "'self' 'unsafe-inline'; object-src 'none'; base-uri 'self'; connect-src 'self' "
        "developer.allizom.org bcd.developer.allizom.org bcd.developer.mozilla.org "
        "updates.developer.allizom.org updates.developer.mozilla.org "
        "https://*.google-analytics.com https://*.analytics.google.com "
        "https://*.googletagmanager.com https://incoming.telemetry.mozilla.org "
        "https://observatory-api.mdn.allizom.net https://observatory-api.mdn.mozilla.net "
        "https://api.github.com/search/issues stats.g.doubleclick.net https://api.stripe.com; "
        "font-src 'self'; frame-src 'self' mdn.github.io *.mdnplay.dev *.mdnyalp.dev "
        "*.play.test.mdn.allizom.net https://v2.scrimba.com https://scrimba.com jsfiddle.net "
        "www.youtube-nocookie.com codepen.io survey.alchemer.com https://js.stripe.com; "
        "img-src 'self' data: *.githubusercontent.com *.googleusercontent.com *.gravatar.com "
        "mozillausercontent.com firefoxusercontent.com profile.stage.mozaws.net "
        "profile.accounts.firefox.com developer.mozilla.org mdn.dev wikipedia.org "
        "upload.wikimedia.org https://mdn.github.io/shared-assets/ https://mdn.dev/ "
        "https://*.google-analytics.com https://*.googletagmanager.com www.gstatic.com; "
        "manifest-src 'self'; media-src 'self' archive.org videos.cdn.mozilla.net "
        "https://mdn.github.io/shared-assets/; child-src 'self'; worker-src 'self';",
    ),
    ("x-goog-meta-goog-reserved-file-mtime", "1768178682"),
    ("x-frame-options", "DENY"),
    ("x-goog-stored-content-encoding", "identity"),
    ("x-goog-generation", "1768180246914205"),
    ("via", "1.1 google, 1.1 varnish, 1.1 varnish, 1.1 varnish"),
    ("server", "Google Frontend"),
    (
        "origin-trial",
        ""
        "AxVILwizhbMjxFeHOn1P3R8niO1RJY/smaK4B4d1rLzc1gTaxtXMSaTi+FoigYgCw40uFRDwFcEAeqDR+vVLOW4AAABfeyJvcmlnaW4iOiJodHRwczovL2RldmVsb3Blci5tb3ppbGxhLm9yZyIsImZlYXR1cmUiOiJQcml2YXRlQXR0cmlidXRpb25WMiIsImV4cGlyeSI6MTc0MjA3OTYwMH0=",
    ),
    ("last-modified", "Mon, 12 Jan 2026 01:10:46 GMT"),
    ("x-goog-storage-class", "STANDARD"),
    ("x-cloud-trace-context", "8dcf8e2be357bfc178a82de3e21f1bd0"),
    ("x-content-type-options", "nosniff"),
    ("content-type", "text/html"),
    ("etag", '"499c22a08147385cae18554d84af204d"'),
    ("cache-control", "public, max-age=3600"),
    (
        "x-guploader-uploadid",
        "AJRbA5U49pMY66VbLDWoUtHpOJRydioEowlLqd8FxTkGaykZsFGGl3xXD9QKpYtHw8vNY4bDK3USRNc",
    ),
    ("strict-transport-security", "max-age=63072000"),
    ("accept-ranges", "bytes"),
    ("date", "Mon, 12 Jan 2026 15:50:42 GMT"),
    ("age", "311"),
    (
        "x-served-by",
        "cache-bfi-kbfi7400058-BFI, cache-bfi-kbfi7400053-BFI, cache-par-lfpg1960034-PAR",
    ),
    ("x-cache", "MISS, MISS, HIT"),
    ("x-cache-hits", "0, 0, 1"),
    ("x-timer", "S1768233043.557179,VS0,VE2"),
    ("vary", "Accept-Encoding"),
]

MOZILLA_ORG_ROUTE = ("http://mozilla.org/", "https://mozilla.org/", "https://www.mozilla.org/")
OBSERVATORY_ROUTE = (
    "http://observatory.mozilla.org/",
    "https://observatory.mozilla.org/",
    "https://developer.mozilla.org/en-US/observatory",
)


def test_mozilla_org() -> None:
    """MDN grades it B (75): -20 for 'unsafe-inline' in script-src, -5 for scripts without SRI
    in the body. On its headers alone MDN's rules give B+ (80), afetch's grade."""
    graded = audit(MOZILLA_ORG, url=MOZILLA_ORG_ROUTE[-1], http_probe=HttpProbe(MOZILLA_ORG_ROUTE))
    assert (graded.score, graded.grade) == (80, "B+")
    assert graded.tests[CSP].result == "csp-implemented-with-unsafe-inline"
    assert graded.tests[XFO].result == "x-frame-options-implemented-via-csp"
    assert graded.tests["cross-origin-opener-policy"].modifier == 10
    assert graded.tests["subresource-integrity"].result == SRI_NOT_EVALUATED


def test_observatory_mozilla_org() -> None:
    """MDN grades it A+ (110); its policy allows 'unsafe-inline' only in style-src."""
    graded = audit(
        OBSERVATORY_MOZILLA_ORG, url=OBSERVATORY_ROUTE[-1], http_probe=HttpProbe(OBSERVATORY_ROUTE)
    )
    assert (graded.score, graded.grade) == (110, "A+")
    assert graded.tests[CSP].result == "csp-implemented-with-unsafe-inline-in-style-src-only"
    assert graded.tests["redirection"].result == "redirection-to-https"


# --- Where afetch deviates from MDN (docs/audit.md lists each) ------------------------------


def test_hsts_max_age_not_a_number_is_invalid() -> None:
    """MDN compares parseInt's NaN, never below six months, so it passes max-age=abc (score
    120 here); afetch calls the header invalid (-20), as MDN's predecessor did."""
    graded = audit(swap("Strict-Transport-Security", "max-age=abc"), url=URL, http_probe=TO_HTTPS)
    assert graded.tests["strict-transport-security"].result == "hsts-header-invalid"
    assert graded.score == 80


def test_quoted_max_age_is_read() -> None:
    """RFC 6797 allows a quoted max-age; MDN passes any quoted value (NaN), afetch reads it."""
    graded = audit(swap("Strict-Transport-Security", 'max-age="60"'), url=URL)
    assert graded.tests["strict-transport-security"].result == (
        "hsts-implemented-max-age-less-than-six-months"
    )


def test_not_evaluated_tests_score_zero() -> None:
    graded = audit(GOOD, url=URL)  # no plain-http probe: not a bare host
    assert graded.tests["redirection"].result == REDIRECTION_NOT_EVALUATED
    assert graded.tests["subresource-integrity"].result == SRI_NOT_EVALUATED
    assert (
        graded.tests["redirection"].modifier == graded.tests["subresource-integrity"].modifier == 0
    )
    assert graded.score == 120


# --- The grader itself ------------------------------------------------------------------------


def test_grade_chart() -> None:
    assert [grade_for(s) for s in (135, 100, 99, 95, 90, 89, 85, 80, 79, 75, 70, 65, 60)] == [
        "A+", "A+", "A", "A", "A", "A-", "A-", "B+", "B", "B", "B", "B-", "C+",
    ]  # fmt: skip
    assert [grade_for(s) for s in (55, 50, 45, 40, 35, 30, 25, 24, 20, 5, 0, -15)] == [
        "C", "C", "C-", "D+", "D", "D", "D-", "F", "F", "F", "F", "F",
    ]  # fmt: skip
    assert set(GRADE_CHART.values()) == set(GRADES)


def test_as_dict_is_the_json_record() -> None:
    graded = audit(cookies("sessionid=1; Secure; HttpOnly; SameSite=Lax"), url=URL)
    record = json.loads(json.dumps(graded.as_dict()))
    assert list(record) == ["score", "grade", "tests"]
    assert list(record["tests"]) == list(TEST_NAMES)
    assert record["tests"]["cookies"] == {
        "result": "cookies-secure-with-httponly-sessions-and-samesite",
        "modifier": 5,
        "reason": "all Secure and SameSite, sessions HttpOnly (1 kept)",
    }
    assert (record["score"], record["grade"]) == (125, "A+")


def test_audit_is_frozen_and_hashable() -> None:
    graded = audit(GOOD, url=URL)
    with pytest.raises(AttributeError):
        graded.score = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        graded.tests["cookies"] = graded.tests["cookies"]  # type: ignore[index]
    assert hash(graded) == hash(audit(GOOD, url=URL))


def test_scheme_asked_counts_for_csp() -> None:
    """An https URL that ends on http still gets MDN's https checks of CSP sources."""
    headers = swap(CSP, "default-src 'none'; img-src http:")
    assert audit(headers, url="http://example.com/").tests[CSP].modifier == 10
    graded = audit(headers, url="http://example.com/", scheme="https")
    assert (
        graded.tests[CSP].result == "csp-implemented-with-insecure-scheme-in-passive-content-only"
    )


def test_malformed_url_is_a_result() -> None:
    graded = audit(cookies("sessionid=1"), url="https://[::1/", http_probe=HttpProbe(("http://[",)))
    assert graded.tests["redirection"].result == "redirection-missing"
    assert graded.tests["strict-transport-security"].result == "hsts-not-implemented-no-https"


def test_csp_malformed_escape_across_policies_is_invalid() -> None:
    """MDN decodes path pieces to compare sources of two policies; a bad escape throws there."""
    graded = audit(
        swap(CSP, "default-src https://a.example/%zz/", "default-src https://a.example/%zz/"),
        url=URL,
    )
    assert graded.tests[CSP].result == "csp-header-invalid"
    graded = audit(
        swap(CSP, "default-src https://a.example/%ff/", "default-src https://a.example/%ff/"),
        url=URL,
    )
    assert graded.tests[CSP].result == "csp-header-invalid"
    same = "default-src 'none' https://a.example/%41/"
    assert (
        audit(swap(CSP, same, same), url=URL).tests[CSP].result == "csp-implemented-with-no-unsafe"
    )


def test_csp_whitespace_is_javascript_whitespace() -> None:
    """MDN splits sources on JavaScript's \\s, which has U+FEFF but not U+001F."""
    joined = audit(swap(CSP, "default-src\ufeff'none'"), url=URL).tests[CSP]
    assert joined.result == "csp-implemented-with-no-unsafe-default-src-none"
    glued = audit(swap(CSP, "default-src\x1f'none'"), url=URL).tests[CSP]
    assert glued.result == "csp-implemented-with-unsafe-inline"  # one unknown directive


# --- Whatever the headers, a result ----------------------------------------------------------

_NAMES = st.sampled_from(
    [
        "Content-Security-Policy", "content-security-policy-report-only", "Set-Cookie",
        "Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options",
        "Referrer-Policy", "Cross-Origin-Opener-Policy", "Cross-Origin-Embedder-Policy",
        "Cross-Origin-Resource-Policy", "Access-Control-Allow-Origin",
        "Access-Control-Allow-Credentials", "X-Other",
    ]
) | st.text(max_size=20)  # fmt: skip
_WORDS = st.sampled_from(
    [
        "default-src", "script-src", "'none'", "'self'", "'unsafe-inline'", "'nonce-a'",
        "'strict-dynamic'", "http:", "https://a.example/%zz/", "*", ";", ",", "=", "max-age=",
        "31536000", "Secure", "SameSite=", "__Host-", "sess", "same-origin", "\"", "@1", " ",
        "\t", "\x00", "\ufeff", "%ff",
    ]
)  # fmt: skip
_VALUES = st.lists(_WORDS | st.text(max_size=8), max_size=10).map("".join) | st.text(max_size=40)
_HEADERS = st.lists(st.tuples(_NAMES, _VALUES), max_size=12)
_URLS = st.sampled_from(
    ["https://example.com/a/b", "http://example.com/", "https://[", ""]
) | st.text(max_size=20)
_PROBES = st.none() | st.builds(
    HttpProbe, st.tuples() | st.lists(_URLS, max_size=4).map(tuple), st.booleans()
)


@settings(max_examples=150, deadline=None)
@given(_HEADERS, _URLS, _PROBES, st.none() | _HEADERS, st.booleans())
def test_any_headers_give_a_consistent_audit(
    headers: Pairs, url: str, probe: HttpProbe | None, cors: Pairs | None, verified: bool
) -> None:
    graded = audit(headers, url=url, http_probe=probe, cors_headers=cors, tls_verified=verified)
    assert list(graded.tests) == list(TEST_NAMES)
    for test in graded.tests.values():
        assert test.modifier == MODIFIERS[test.result]
        assert test.reason and "\n" not in test.reason
    penalties = sum(min(t.modifier, 0) for t in graded.tests.values())
    total = sum(t.modifier for t in graded.tests.values())
    if 100 + penalties >= MINIMUM_SCORE_FOR_EXTRA_CREDIT:
        assert graded.score == 100 + total
    else:
        assert graded.score == max(100 + penalties, 0)
    assert graded.grade == grade_for(graded.score) and graded.grade in GRADES
    json.dumps(graded.as_dict())


def bench_call() -> Audit:
    """The call timed in fetcher/audit.py's docstring: mozilla.org's headers, two cookies."""
    return audit(BENCH_HEADERS, url=MOZILLA_ORG_ROUTE[-1], http_probe=HttpProbe(MOZILLA_ORG_ROUTE))


BENCH_HEADERS = MOZILLA_ORG + [
    ("Set-Cookie", "sessionid=abc; Path=/; Secure; HttpOnly; SameSite=Lax"),
    ("Set-Cookie", "theme=dark; Path=/; Max-Age=31536000"),
]
