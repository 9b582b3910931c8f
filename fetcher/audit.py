"""Header audit: MDN HTTP Observatory scoring of one response's headers (for --audit).

Pure: a response's headers and the few facts MDN's tests read (the final URL, the scheme first
asked, the plain-http probe's route, the answer to an ``Origin`` request) go in; an `Audit` comes
out, with MDN's own result names and modifiers per test, the score and the grade. No I/O.

The rules are those of mdn/mdn-http-observatory (algorithm version 6): start at 100, add every
test's modifier, keep the bonuses (positive modifiers) only when the score without them is at
least 90, never below 0, grade from the chart in steps of five. Headers are joined the way
MDN's client (Node) joins repeated fields, ``", "`` for all but Set-Cookie, so a doubled
X-Frame-Options is as invalid here as there. What needs the body (Subresource Integrity,
``<meta http-equiv>``) or data afetch does not ship (the HSTS preload list, the public suffix
list) is reported as not evaluated or left out; the README ("Security headers: --audit") lists
each deviation.

Cost, in CPU time per call (timeit -p, best of 10, on the project's 2-core box at load
average 6.8 from other work, so an idle box does better): 80-96 us for mozilla.org's 25
headers with its 1.3 kB CSP and two cookies, 79 us for observatory.mozilla.org's 2.5 kB CSP,
12 us for a bare 5-header response. Command, from the repository root:
``.venv/bin/python -m timeit -p -r 10 -s 'from tests.test_audit import bench_call as f' 'f()'``.
CSP parsing is half of it: a one-policy path without the merge's bookkeeping and no collation
sort where no source prefixes another halved the mozilla.org call (159 -> 80 us, timed
interleaved with the first version in one process, same output).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, pairwise
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urlsplit

Headers = Sequence[tuple[str, str]]

# The Origin afetch sends under --audit. A reserved name (RFC 2606 .invalid) is no one's real
# origin, so an Access-Control-Allow-Origin equal to it can only be a reflection.
AUDIT_ORIGIN = "https://audit.afetch.invalid"

SCORE_START = 100
# Bonuses count only when the score without them already earns an A (MDN's extra credit).
MINIMUM_SCORE_FOR_EXTRA_CREDIT = 90
# MDN's grade chart: the score rounded down to a multiple of five (capped at 100) -> grade.
GRADE_CHART: Mapping[int, str] = MappingProxyType(
    {100: "A+", 95: "A", 90: "A", 85: "A-", 80: "B+", 75: "B", 70: "B", 65: "B-", 60: "C+",
     55: "C", 50: "C", 45: "C-", 40: "D+", 35: "D", 30: "D", 25: "D-", 20: "F", 15: "F",
     10: "F", 5: "F", 0: "F"}
)  # fmt: skip
GRADES = ("A+", "A", "A-", "B+", "B", "B-", "C+", "C", "C-", "D+", "D", "D-", "F")

# Results afetch gives where MDN needs data it does not have: scored 0, named as afetch's own.
SRI_NOT_EVALUATED = "sri-not-evaluated"
REDIRECTION_NOT_EVALUATED = "redirection-not-evaluated"

# Every result and its modifier: MDN's score table (src/grader/charts.js), plus afetch's two.
MODIFIERS: Mapping[str, int] = MappingProxyType(
    {
        # Content-Security-Policy
        "csp-implemented-with-no-unsafe-default-src-none": 10,
        "csp-implemented-with-no-unsafe": 5,
        "csp-implemented-with-unsafe-inline-in-style-src-only": 0,
        "csp-implemented-but-duplicate-directives": 0,
        "csp-implemented-with-insecure-scheme-in-passive-content-only": -10,
        "csp-implemented-with-unsafe-eval": -10,
        "csp-implemented-with-unsafe-inline": -20,
        "csp-implemented-with-insecure-scheme": -20,
        "csp-header-invalid": -25,
        "csp-not-implemented": -25,
        "csp-not-implemented-but-reporting-enabled": -25,
        # Cookies
        "cookies-secure-with-httponly-sessions-and-samesite": 5,
        "cookies-secure-with-httponly-sessions": 0,
        "cookies-not-found": 0,
        "cookies-without-secure-flag-but-protected-by-hsts": -5,
        "cookies-session-without-secure-flag-but-protected-by-hsts": -10,
        "cookies-without-secure-flag": -20,
        "cookies-samesite-flag-invalid": -20,
        "cookies-anticsrf-without-samesite-flag": -20,
        "cookies-session-without-httponly-flag": -30,
        "cookies-session-without-secure-flag": -40,
        # Cross-Origin-Embedder-Policy
        "coep-implemented-with-require-corp": 10,
        "coep-implemented-with-credentialless": 10,
        "coep-implemented-with-unsafe-none": 0,
        "coep-not-implemented": 0,
        "coep-header-invalid": -5,
        # Cross-Origin-Opener-Policy
        "coop-implemented-with-same-origin": 10,
        "coop-implemented-with-same-origin-allow-popups": 10,
        "coop-implemented-with-noopener-allow-popups": 10,
        "coop-implemented-with-unsafe-none": 0,
        "coop-not-implemented": 0,
        "coop-header-invalid": -5,
        # CORS
        "cross-origin-resource-sharing-not-implemented": 0,
        "cross-origin-resource-sharing-implemented-with-public-access": 0,
        "cross-origin-resource-sharing-implemented-with-restricted-access": 0,
        "cross-origin-resource-sharing-implemented-with-universal-access": -50,
        # Redirection
        "redirection-all-redirects-preloaded": 0,
        "redirection-to-https": 0,
        "redirection-not-needed-no-http": 0,
        "redirection-off-host-from-http": -5,
        "redirection-not-to-https-on-initial-redirection": -10,
        "redirection-not-to-https": -20,
        "redirection-missing": -20,
        "redirection-invalid-cert": -20,
        REDIRECTION_NOT_EVALUATED: 0,
        # Referrer-Policy
        "referrer-policy-private": 5,
        "referrer-policy-not-implemented": 0,
        "referrer-policy-unsafe": -5,
        "referrer-policy-header-invalid": -5,
        # Strict-Transport-Security
        "hsts-preloaded": 5,
        "hsts-implemented-max-age-at-least-six-months": 0,
        "hsts-implemented-max-age-less-than-six-months": -10,
        "hsts-not-implemented": -20,
        "hsts-header-invalid": -20,
        "hsts-not-implemented-no-https": -20,
        "hsts-invalid-cert": -20,
        # Subresource Integrity: needs the body
        SRI_NOT_EVALUATED: 0,
        # X-Content-Type-Options
        "x-content-type-options-nosniff": 0,
        "x-content-type-options-not-implemented": -5,
        "x-content-type-options-header-invalid": -5,
        # X-Frame-Options
        "x-frame-options-implemented-via-csp": 5,
        "x-frame-options-sameorigin-or-deny": 5,
        "x-frame-options-allow-from-origin": 0,
        "x-frame-options-not-implemented": -20,
        "x-frame-options-header-invalid": -20,
        # Cross-Origin-Resource-Policy
        "corp-implemented-with-same-origin": 10,
        "corp-implemented-with-same-site": 10,
        "corp-implemented-with-cross-origin": 0,
        "corp-not-implemented": 0,
        "corp-header-invalid": -5,
    }
)

# The tests, in MDN's order (src/constants.js ALL_TESTS): the keys of Audit.tests and the JSON.
TEST_NAMES = (
    "content-security-policy", "cookies", "cross-origin-embedder-policy",
    "cross-origin-opener-policy", "cross-origin-resource-sharing", "redirection",
    "referrer-policy", "strict-transport-security", "subresource-integrity",
    "x-content-type-options", "x-frame-options", "cross-origin-resource-policy",
)  # fmt: skip

# How much of a value MDN reads ("code against malicious headers"); the same cut here keeps the
# same verdicts (a comma past the first 1024 HSTS characters is not seen there either).
XCTO_READ, XFO_READ, HSTS_READ, COXP_READ, CORP_READ, ACAO_READ = 256, 1024, 1024, 1024, 256, 256
HSTS_MAX_AGE_DIGITS_END = 128  # MDN parses max-age from characters 8..128 of the directive
# MDN's "six months": 180 days, "a white lie" below the 15768000 its own text names.
HSTS_SIX_MONTHS = 15_552_000


@dataclass(frozen=True, slots=True)
class TestResult:
    """One test's verdict: MDN's result name, its modifier, and why, in one line."""

    result: str
    modifier: int
    reason: str

    __test__ = False  # not a pytest class, whatever its name

    def as_dict(self) -> dict[str, Any]:
        return {"result": self.result, "modifier": self.modifier, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Audit:
    """The graded response: MDN's score and grade, and each test by its MDN name."""

    score: int
    grade: str
    tests: Mapping[str, TestResult] = field(hash=False)

    def as_dict(self) -> dict[str, Any]:
        """The JSON record's ``audit`` field; names and order are a stable interface."""
        return {
            "score": self.score,
            "grade": self.grade,
            "tests": {name: test.as_dict() for name, test in self.tests.items()},
        }


@dataclass(frozen=True, slots=True)
class HttpProbe:
    """What the plain-http request for a bare host saw, redirects followed.

    `route` is every URL asked, the http:// one first and the final one last (empty when http
    could not connect); `verified` is False when a TLS certificate on the way failed.
    """

    route: tuple[str, ...]
    verified: bool = True


def grade_for(score: int) -> str:
    """MDN's grade for a score: A+ from 100 up, then a grade per step of five."""
    score = max(score, 0)
    return GRADE_CHART[min(score - score % 5, 100)]


def audit(
    headers: Headers,
    *,
    url: str,
    scheme: str | None = None,
    tls_verified: bool = True,
    http_probe: HttpProbe | None = None,
    cors_headers: Headers | None = None,
    origin: str = AUDIT_ORIGIN,
) -> Audit:
    """Grade one response the way MDN's Observatory does.

    `headers`: the final response's fields in received order, duplicates kept. `url`: the URL
    that response came from (its scheme says whether it came over https; its host and path
    decide which cookies a browser keeps). `scheme`: the scheme first asked, when it differs.
    `tls_verified`: False when the https response was had without a verified certificate.
    `http_probe`: the plain-http route for a bare host; None scores redirection as not
    evaluated. `cors_headers`: the answer to the request that carried ``Origin: origin``
    (default: `headers`, afetch sends Origin on the request itself).
    """
    fields = _Fields(headers)
    parts = _split_url(url)
    final_https = parts[0] == "https"
    # MDN checks CSP sources against the scheme of the site it scanned (its https session).
    https_site = final_https or (scheme or "").lower() == "https"
    hsts = _hsts(fields, final_https, tls_verified)
    csp, frame_ancestors = _csp(fields, https_site)
    cors = fields if cors_headers is None else _Fields(cors_headers)
    tests = {
        "content-security-policy": csp,
        "cookies": _cookies(fields, parts[1], parts[2], hsts.result in _HSTS_PASSING),
        "cross-origin-embedder-policy": _coxp(fields.get("cross-origin-embedder-policy"),
                                              _COEP_RESULTS, "coep"),
        "cross-origin-opener-policy": _coxp(fields.get("cross-origin-opener-policy"),
                                            _COOP_RESULTS, "coop"),
        "cross-origin-resource-sharing": _cors(cors, origin),
        "redirection": _redirection(http_probe),
        "referrer-policy": _referrer(fields.get("referrer-policy")),
        "strict-transport-security": hsts,
        "subresource-integrity": _result(SRI_NOT_EVALUATED, "needs the response body"),
        "x-content-type-options": _xcto(fields.get("x-content-type-options")),
        "x-frame-options": _xfo(fields.get("x-frame-options"), frame_ancestors),
        "cross-origin-resource-policy": _corp(fields.get("cross-origin-resource-policy")),
    }  # fmt: skip
    return Audit(*_score(tests.values()), MappingProxyType(tests))


def _score(tests: Iterable[TestResult]) -> tuple[int, str]:
    """MDN's total: every modifier, but the bonuses only if the penalties leave at least 90."""
    with_bonus = without_bonus = SCORE_START
    for test in tests:
        with_bonus += test.modifier
        if test.modifier < 0:
            without_bonus += test.modifier
    score = with_bonus if without_bonus >= MINIMUM_SCORE_FOR_EXTRA_CREDIT else without_bonus
    score = max(score, 0)
    return score, grade_for(score)


def _result(name: str, reason: str) -> TestResult:
    return TestResult(name, MODIFIERS[name], reason)


def _brief(value: str, limit: int = 60) -> str:
    """A header value short and printable enough to quote in a one-line reason."""
    flat = _CONTROL.sub("?", value)
    return repr(flat if len(flat) <= limit else flat[: limit - 3] + "...")


# JavaScript's String.prototype.trim() and /\s/ set, which MDN's parsing uses: not quite
# Python's (no \x1c-\x1f or \x85, but U+FEFF).
_JS_SPACE = "\t\n\x0b\x0c\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008" \
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"  # fmt: skip
_JS_SPLIT = re.compile(f"[{_JS_SPACE}]+")
_NOT_PY_SPACE = re.compile("[\x1c-\x1f\x85\ufeff]")  # where str.split() and /\s+/ differ
_ASCII_NOT_PY_SPACE = frozenset("\x1c\x1d\x1e\x1f")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_NO_DEL = re.compile(r"[\x00-\x1f]")  # what tough-cookie refuses in a name or value
_JS_PARSE_INT = re.compile(f"[{_JS_SPACE}]*([+-]?)([0-9]+)")


def _js_trim(text: str) -> str:
    return text.strip(_JS_SPACE)


class _Fields:
    """Header fields by lower-cased name, repeats joined with ", " as Node joins them for MDN;
    Set-Cookie kept one value per field."""

    __slots__ = ("joined", "cookies")

    def __init__(self, headers: Headers) -> None:
        joined: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in headers:
            key = name.lower()
            value = value.strip(" \t")  # the OWS an HTTP parser drops
            if key == "set-cookie":
                cookies.append(value)
            elif key in joined:
                joined[key] = f"{joined[key]}, {value}"
            else:
                joined[key] = value
        self.joined = joined
        self.cookies = cookies

    def get(self, name: str) -> str | None:
        return self.joined.get(name)


def _split_url(url: str) -> tuple[str, str, str]:
    """(scheme, host, path) of a URL, lower-cased where URLs are; empty parts when malformed."""
    try:
        parts = urlsplit(url)
        return parts.scheme.lower(), (parts.hostname or ""), parts.path
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return "", "", ""


# --- Content-Security-Policy -------------------------------------------------------------

_CSP_SHORTEST_POLICY = len("img-src") - 1  # MDN's floor: a shorter policy is invalid
_CSP_REPEATABLE = frozenset({"report-uri", "report-to"})
_CSP_BROAD = frozenset(
    {"ftp:", "http:", "https:", "*", "http://*", "http://*.*", "https://*", "https://*.*"}
)
_CSP_BROAD_OR_INLINE = _CSP_BROAD | {"'unsafe-inline'", "data:"}
_CSP_BROAD_PREFIXES = tuple(_CSP_BROAD)
_CSP_NONCE_HASH = ("'sha256-", "'sha384-", "'sha512-", "'nonce-")
_CSP_PASSIVE = ("img-src", "media-src")
_INSECURE_SCHEMES = ("http:", "ftp:")
_CSP_PASS = frozenset({
    "csp-implemented-with-no-unsafe", "csp-implemented-with-no-unsafe-default-src-none",
    "csp-implemented-with-unsafe-inline-in-style-src-only",
    "csp-implemented-with-insecure-scheme-in-passive-content-only",
})  # fmt: skip
_CSP_REASONS = {
    "csp-implemented-with-unsafe-inline": "script-src allows 'unsafe-inline', data: or a broad "
    "source, or object-src/script-src is broad or unset",
    "csp-implemented-with-insecure-scheme": "an https site allows active content over http:/ftp:",
    "csp-implemented-with-unsafe-eval": "script-src or style-src allows 'unsafe-eval'",
    "csp-implemented-with-insecure-scheme-in-passive-content-only": "an https site allows images "
    "or media over http:/ftp:",
    "csp-implemented-with-unsafe-inline-in-style-src-only": "only style-src allows "
    "'unsafe-inline', data: or a broad source",
    "csp-implemented-with-no-unsafe-default-src-none": "default-src 'none', nothing unsafe",
    "csp-implemented-with-no-unsafe": "no 'unsafe-inline', 'unsafe-eval' or broad sources",
    "csp-implemented-but-duplicate-directives": "a passing policy repeats report-uri/report-to",
}

# Intl.Collator("en") orders MDN's sources before it drops a source its sorted neighbour is a
# prefix of: ICU's root order, punctuation first, for ASCII (found by sorting in Node); other
# characters fall after it in code point order, an approximation; control characters are
# ignorable there as here.
_ICU_ASCII = "_-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789abcdefghijklmnopqrstuvwxyz"
_COLLATION: dict[int, str | None] = {ord(c): chr(1 + i) for i, c in enumerate(_ICU_ASCII)}
_COLLATION.update(
    {ord(c.upper()): chr(1 + _ICU_ASCII.index(c)) for c in "abcdefghijklmnopqrstuvwxyz"}
)
_COLLATION.update({i: None for i in [*range(0x20), 0x7F]})
_collation_key = operator.methodcaller("translate", _COLLATION)


class _CspInvalid(Exception):
    """The policy cannot be parsed the way MDN parses it."""


class _Source:
    """One source of a directive while policies are merged: MDN marks them kept or not."""

    __slots__ = ("text", "policy", "keep")

    def __init__(self, text: str, policy: int, keep: bool) -> None:
        self.text, self.policy, self.keep = text, policy, keep


def _parse_csp(policies: list[str]) -> tuple[dict[str, set[str]], bool]:
    """Directive -> sources of the merged policies, and whether report-uri/to repeat.

    MDN's parser (src/analyzer/cspParser.js) in its own semantics, quirks included: a repeated
    directive is invalid, an empty source list is 'none', a source is dropped when its
    neighbour in MDN's sort is a prefix of it, and with several policies a source survives
    where that sort puts it next to its match from an earlier policy.
    """
    clean = [_js_trim(p.replace("\r", "").replace("\n", "")) for p in policies]
    for policy in clean:
        if len(policy) < _CSP_SHORTEST_POLICY:
            raise _CspInvalid(f"policy {_brief(policy)} is too short")
    repeated = [False]
    if len(clean) == 1:  # the usual case: no merge, so no bookkeeping per source
        csp: dict[str, set[str]] = {}
        for directive, words in _directives(clean[0], repeated):
            if len(words) > 1 and _has_prefix_pair(words):
                words.sort(key=_collation_key)
                words = [words[0]] + [b for a, b in pairwise(words) if not b.startswith(a)]
            csp[directive] = set(words) or {"'none'"}
        return csp, repeated[0]
    merged: dict[str, list[_Source]] = {}
    for index, policy in enumerate(clean):
        first = index == 0
        for directive, words in _directives(policy, repeated):
            sources = [_Source(word, index, first) for word in words]
            if not first:
                sources = merged.get(directive, []) + sources
            sources.sort(key=lambda s: _collation_key(s.text))
            for prev, src in pairwise(sources):
                if src.policy == prev.policy:
                    if src.text.startswith(prev.text):
                        src.keep = False  # a longer form of its neighbour adds nothing
                elif _path_part_match(prev.text, src.text):
                    src.keep = True  # in both policies: it counts
            kept = [s for s in sources if s.keep]
            merged[directive] = kept
            if first:
                for s in kept:
                    s.keep = False  # later policies must confirm each source
    csp = {d: ({s.text for s in srcs} or {"'none'"}) for d, srcs in merged.items()}
    return csp, repeated[0]


def _has_prefix_pair(words: list[str]) -> bool:
    """Whether one word is a prefix of (or equal to) another: only then can MDN's sort drop one.

    In code point order such a pair always has an adjacent one, so a plain sort finds it; this
    spares most directives the costlier collation sort.
    """
    plain = sorted(words)
    return any(map(str.startswith, plain[1:], plain[:-1]))


def _directives(policy: str, repeated: list[bool]) -> Iterator[tuple[str, list[str]]]:
    """(directive, sources) of one policy, lower-cased; sets repeated[0] on a repeated
    report-uri/report-to, raises on any other repeated directive."""
    policy = policy.lower()  # as MDN lower-cases each name and source
    exact_split = (policy.isascii() and _ASCII_NOT_PY_SPACE.isdisjoint(policy)) or (
        _NOT_PY_SPACE.search(policy) is None
    )
    seen: set[str] = set()
    for entry in policy.split(";"):
        words = entry.split() if exact_split else _JS_SPLIT.split(_js_trim(entry))
        if not words or not words[0]:
            continue
        directive = words[0]
        if directive in seen:
            if directive not in _CSP_REPEATABLE:
                raise _CspInvalid(f"directive {directive} repeated")
            repeated[0] = True
        seen.add(directive)
        del words[0]
        if not words and directive.endswith("-src"):
            words.append("'none'")
        yield directive, words


_MALFORMED_ESCAPE = re.compile("%(?![0-9a-fA-F]{2})")


def _uri_decode(piece: str) -> str:
    """decodeURIComponent: a malformed escape or bad UTF-8 is an error, not left as is."""
    if "%" not in piece:
        return piece
    if _MALFORMED_ESCAPE.search(piece):
        raise _CspInvalid(f"malformed escape in {_brief(piece)}")
    try:
        return unquote(piece, errors="strict")
    except UnicodeDecodeError as exc:
        raise _CspInvalid(f"bad UTF-8 escape in {_brief(piece)}") from exc


def _path_part_match(first: str, second: str) -> bool:
    """MDN's match of a source against one from another policy, path piece by path piece.

    (Its shortcuts for an empty path never apply: a source is never an empty string.)
    """
    exact = not first.endswith("/")
    pieces_a, pieces_b = first.split("/"), second.split("/")
    if len(pieces_a) > len(pieces_b) or (exact and len(pieces_a) != len(pieces_b)):
        return False
    if not exact:
        pieces_a.pop()
    return all(_uri_decode(a) == _uri_decode(b) for a, b in zip(pieces_a, pieces_b, strict=False))


def _pick(csp: dict[str, set[str]], name: str) -> set[str]:
    """A fetch directive's sources, falling back on default-src, then on anything ('*')."""
    found = csp.get(name)
    if found is None:
        found = csp.get("default-src")
    return {"*"} if found is None else found


def _csp(fields: _Fields, https_site: bool) -> tuple[TestResult, bool]:
    """The CSP test, and whether the policy has frame-ancestors (X-Frame-Options reads it)."""
    header = fields.get("content-security-policy")
    # Commas separate policies (CSP3 2.2); Node has already joined repeated fields with them.
    policies = [] if header is None else [_js_trim(p) for p in header.split(",")]
    try:
        csp, repeated_reports = _parse_csp(policies)
    except _CspInvalid as exc:
        return _result("csp-header-invalid", f"cannot be parsed: {exc}"), False
    if not csp:
        if fields.get("content-security-policy-report-only"):
            return _result("csp-not-implemented-but-reporting-enabled", "report-only policy"), False
        why = "no Content-Security-Policy header" if header is None else "no directives"
        return _result("csp-not-implemented", why), False

    # These may be one set (default-src's): MDN edits them in place, and so does this.
    object_src = _pick(csp, "object-src")
    script_src = _pick(csp, "script-src")
    style_src = _pick(csp, "style-src")
    for sources in (script_src, style_src):
        if "'unsafe-inline'" in sources and _has_nonce_or_hash(sources):
            sources.discard("'unsafe-inline'")  # browsers ignore it beside a nonce or hash
    result: str | None = None
    reason = ""
    if "'strict-dynamic'" in script_src:
        if _has_nonce_or_hash(script_src):
            for source in list(script_src):
                if source.startswith(_CSP_BROAD_PREFIXES) or source in (
                    "'self'",
                    "'unsafe-inline'",
                ):
                    script_src.discard(source)  # ignored under 'strict-dynamic'
        else:
            result, reason = "csp-header-invalid", "'strict-dynamic' without a nonce or hash"
    if result is None:
        result = _csp_verdict(csp, object_src, script_src, style_src, https_site)
        reason = _CSP_REASONS[result]
        if result in _CSP_PASS and repeated_reports:
            reason = f"{_CSP_REASONS['csp-implemented-but-duplicate-directives']} ({reason})"
            result = "csp-implemented-but-duplicate-directives"
    return _result(result, reason), "frame-ancestors" in csp


def _csp_verdict(
    csp: dict[str, set[str]],
    object_src: set[str],
    script_src: set[str],
    style_src: set[str],
    https_site: bool,
) -> str:
    """MDN's checks in MDN's order: the first that fails names the result."""
    if not _CSP_BROAD_OR_INLINE.isdisjoint(script_src) or not _CSP_BROAD.isdisjoint(object_src):
        return "csp-implemented-with-unsafe-inline"
    if https_site:
        active = [srcs for d, srcs in csp.items() if d not in _CSP_PASSIVE and d != "script-src"]
        if _any_insecure([*active, script_src]):
            return "csp-implemented-with-insecure-scheme"
    if "'unsafe-eval'" in script_src or "'unsafe-eval'" in style_src:
        return "csp-implemented-with-unsafe-eval"
    default = csp.get("default-src", set())
    if https_site and _any_insecure([csp.get(d, default) for d in _CSP_PASSIVE]):
        return "csp-implemented-with-insecure-scheme-in-passive-content-only"
    if not _CSP_BROAD_OR_INLINE.isdisjoint(style_src):
        return "csp-implemented-with-unsafe-inline-in-style-src-only"
    if default == {"'none'"}:
        return "csp-implemented-with-no-unsafe-default-src-none"
    return "csp-implemented-with-no-unsafe"


_starts_insecure = operator.methodcaller("startswith", _INSECURE_SCHEMES)


def _any_insecure(groups: list[set[str]]) -> bool:
    """Whether any source is an http: or ftp: one (a C-level scan: no Python call per source)."""
    return any(map(_starts_insecure, chain.from_iterable(groups)))


def _has_nonce_or_hash(sources: set[str]) -> bool:
    return any(s.startswith(_CSP_NONCE_HASH) for s in sources)


# --- Cookies ---------------------------------------------------------------------------

# Heroku's affinity cookie cannot be made secure by the site (mozilla/http-observatory#282).
_COOKIES_IGNORED = frozenset({"heroku-session-affinity"})
# MDN's order of cookie results, best to worst: the worst one found is the verdict.
_COOKIE_ORDER = (
    "cookies-without-secure-flag-but-protected-by-hsts",
    "cookies-without-secure-flag",
    "cookies-session-without-secure-flag-but-protected-by-hsts",
    "cookies-samesite-flag-invalid",
    "cookies-anticsrf-without-samesite-flag",
    "cookies-session-without-httponly-flag",
    "cookies-session-without-secure-flag",
)
_COOKIE_RANK = {name: rank for rank, name in enumerate(_COOKIE_ORDER)}
_SAMESITE_VALUES = frozenset({"strict", "lax", "none"})
_SESSION_MARKS = ("login", "sess")  # how MDN tells a session cookie: by its name
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")


@dataclass(slots=True)
class _Cookie:
    """The attributes of a kept cookie that MDN's test reads."""

    name: str
    secure: bool = False
    http_only: bool = False
    same_site: str | None = None  # strict, lax or none; None when absent or unrecognised
    domain: str | None = None
    path: str | None = None


def _parse_cookie(line: str) -> _Cookie | None:
    """A Set-Cookie value as tough-cookie reads it (strict mode), or None if it drops it."""
    line = _js_trim(line)
    if not line:
        return None
    pair, _, attributes = line.partition(";")
    for cut in ("\n", "\r", "\0"):
        pair = pair.split(cut, 1)[0]
    eq = pair.find("=")
    if eq <= 0:
        return None  # a cookie needs a name
    name, value = _js_trim(pair[:eq]), _js_trim(pair[eq + 1 :])
    if _CONTROL_NO_DEL.search(name) or _CONTROL_NO_DEL.search(value):
        return None
    cookie = _Cookie(name)
    for attribute in attributes.split(";"):
        attribute = _js_trim(attribute)
        if not attribute:
            continue
        key, sep, raw = attribute.partition("=")
        key = _js_trim(key).lower()
        value = _js_trim(raw) if sep else ""
        if key == "secure":
            cookie.secure = True
        elif key == "httponly":
            cookie.http_only = True
        elif key == "samesite":
            cookie.same_site = value.lower() if value.lower() in _SAMESITE_VALUES else None
        elif key == "domain" and value:
            domain = value.removeprefix(".").lower()
            if domain:
                cookie.domain = domain
        elif key == "path":
            cookie.path = value if value.startswith("/") else None
    return cookie


def _default_path(path: str) -> str:
    """RFC 6265 5.1.4: the directory of the request path."""
    if not path.startswith("/") or path.count("/") == 1:
        return "/"
    return path[: path.rindex("/")]


def _domain_matches(host: str, domain: str) -> bool:
    """RFC 6265 5.1.3: the host is the domain or a name under it (never for an IP address)."""
    if host == domain:
        return True
    return host.endswith("." + domain) and not (_IPV4.fullmatch(host) or ":" in host)


def _jar(lines: list[str], host: str, path: str) -> list[_Cookie]:
    """The cookies a browser-like jar keeps from these Set-Cookie values (last one wins)."""
    kept: dict[tuple[str, str, str], _Cookie] = {}
    for line in lines:
        cookie = _parse_cookie(line)
        if cookie is None:
            continue
        host_only = cookie.domain is None
        if cookie.domain is not None:
            # A single label (com) is always a public suffix; tough-cookie drops such cookies.
            if "." not in cookie.domain or not _domain_matches(host, cookie.domain):
                continue
        else:
            cookie.domain = host
        if cookie.path is None:
            cookie.path = _default_path(path)
        if cookie.name.startswith("__Secure-") and not cookie.secure:
            continue
        if cookie.name.startswith("__Host-") and not (
            cookie.secure and host_only and cookie.path == "/"
        ):
            continue
        kept[(cookie.domain, cookie.path, cookie.name)] = cookie
    return [c for c in kept.values() if c.name and c.name not in _COOKIES_IGNORED]


def _invalid_samesite(line: str) -> bool:
    """MDN's raw check: a SameSite with no value or one not Strict, Lax or None."""
    for part in _js_trim(line).split(";"):
        key, _, rest = _js_trim(part).partition("=")
        if _js_trim(key).lower() == "samesite":
            value = rest.split("=", 1)[0]
            if not value or _js_trim(value).lower() not in _SAMESITE_VALUES:
                return True
    return False


_COOKIE_REASONS = {
    "cookies-without-secure-flag-but-protected-by-hsts": "a cookie lacks Secure; HSTS covers it",
    "cookies-without-secure-flag": "a cookie lacks Secure",
    "cookies-session-without-secure-flag-but-protected-by-hsts": "a session cookie lacks "
    "Secure; HSTS covers it",
    "cookies-samesite-flag-invalid": "SameSite is not Strict, Lax or None, or None without Secure",
    "cookies-anticsrf-without-samesite-flag": "an anti-CSRF cookie lacks SameSite",
    "cookies-session-without-httponly-flag": "a session cookie lacks HttpOnly",
    "cookies-session-without-secure-flag": "a session cookie lacks Secure",
    "cookies-secure-with-httponly-sessions": "all Secure, sessions HttpOnly; some lack SameSite",
    "cookies-secure-with-httponly-sessions-and-samesite": "all Secure and SameSite, sessions "
    "HttpOnly",
}


def _cookies(fields: _Fields, host: str, path: str, hsts: bool) -> TestResult:
    """MDN's cookie test on the cookies this response sets."""
    cookies = _jar(fields.cookies, host, path)
    if not cookies:
        why = "no Set-Cookie" if not fields.cookies else "no cookie a browser would keep"
        return _result("cookies-not-found", why)
    worst = -1
    if any(_invalid_samesite(line) for line in fields.cookies):  # read raw, before the jar
        worst = _COOKIE_RANK["cookies-samesite-flag-invalid"]
    missing_samesite = False
    for cookie in cookies:
        name = cookie.name.lower()
        session = any(mark in name for mark in _SESSION_MARKS)
        found = []
        if not cookie.secure:
            if cookie.same_site == "none":
                found.append("cookies-samesite-flag-invalid")
            found.append(
                "cookies-without-secure-flag-but-protected-by-hsts"
                if hsts
                else "cookies-without-secure-flag"
            )
            if session:
                found.append(
                    "cookies-session-without-secure-flag-but-protected-by-hsts"
                    if hsts
                    else "cookies-session-without-secure-flag"
                )
        if "csrf" in name and cookie.same_site is None:
            found.append("cookies-anticsrf-without-samesite-flag")
        if session and not cookie.http_only:
            found.append("cookies-session-without-httponly-flag")
        for result in found:
            worst = max(worst, _COOKIE_RANK[result])
        missing_samesite = missing_samesite or cookie.same_site is None
    if worst >= 0:
        result = _COOKIE_ORDER[worst]
    elif missing_samesite:
        result = "cookies-secure-with-httponly-sessions"
    else:
        result = "cookies-secure-with-httponly-sessions-and-samesite"
    return _result(result, f"{_COOKIE_REASONS[result]} ({len(cookies)} kept)")


# --- Strict-Transport-Security ------------------------------------------------------------

_HSTS_PASSING = frozenset({"hsts-implemented-max-age-at-least-six-months", "hsts-preloaded"})
_QUOTED_DIGITS = re.compile(r'"([0-9]+)"')


def _hsts(fields: _Fields, final_https: bool, tls_verified: bool) -> TestResult:
    """MDN's HSTS test; the preload list (a +5 bonus there) is not consulted."""
    if not final_https:
        return _result("hsts-not-implemented-no-https", "the response did not come over https")
    if not tls_verified:
        return _result("hsts-invalid-cert", "the certificate was not verified")
    header = fields.get("strict-transport-security")
    if header is None:
        return _result("hsts-not-implemented", "no Strict-Transport-Security header")
    data = header[:HSTS_READ]
    if "," in data:
        return _result("hsts-header-invalid", "set more than once")
    seen, max_age = False, None
    for directive in data.split(";"):
        directive = _js_trim(directive).lower()
        if directive.startswith("max-age="):  # the last one counts, as in MDN
            seen, max_age = True, _max_age(directive[8:HSTS_MAX_AGE_DIGITS_END])
    if not seen:
        return _result("hsts-header-invalid", "no max-age")
    if max_age is None:
        return _result("hsts-header-invalid", f"max-age is not a number: {_brief(data)}")
    if max_age < HSTS_SIX_MONTHS:
        return _result(
            "hsts-implemented-max-age-less-than-six-months",
            f"max-age={max_age} < {HSTS_SIX_MONTHS}",
        )
    why = f"max-age={max_age} >= {HSTS_SIX_MONTHS}; preload list not consulted"
    return _result("hsts-implemented-max-age-at-least-six-months", why)


def _max_age(text: str) -> int | None:
    """max-age as MDN's parseInt reads it (leading digits), or the digits of a quoted value.

    Where parseInt finds no number MDN compares NaN, which is never below six months, and so
    passes the header; afetch calls such a header invalid, as MDN's predecessor did.
    """
    found = _JS_PARSE_INT.match(text)
    if found:
        number = int(found.group(2))
        return -number if found.group(1) == "-" else number
    quoted = _QUOTED_DIGITS.fullmatch(_js_trim(text))
    return int(quoted.group(1)) if quoted else None


# --- Cross-Origin-{Opener,Embedder,Resource}-Policy -------------------------------------

# An RFC 8941/9651 Item whose bare item is a token, as the structured-headers parser MDN uses
# reads it: the token, then parameters whose values may be any bare item; a Date parameter ends
# the input there (that parser reads digits to the end of it).
_SF_KEY = r"[a-z*][a-z0-9_\-.*]*"
_SF_BARE = (
    r'(?:-?[0-9]{1,12}\.[0-9]{1,3}|-?[0-9]{1,15}|"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\\"])*"'
    r"|[A-Za-z*][:/!#$%&'*+\-.^_`|~A-Za-z0-9]*|:[A-Za-z0-9+/=]*:|\?[01]"
    r'|%"(?:[\x20\x21\x23\x24\x26-\x5b\x5d-\x7e]|%[0-9a-f]{2})*")'
)
_SF_TOKEN_ITEM = re.compile(
    rf"\x20*([A-Za-z*][:/!#$%&'*+\-.^_`|~A-Za-z0-9]*)(?:;\x20*{_SF_KEY}(?:={_SF_BARE})?)*"
    rf"(?:\x20*|;\x20*{_SF_KEY}=@-?[0-9]{{1,15}})"
)
_COOP_RESULTS = {
    "same-origin": "coop-implemented-with-same-origin",
    "same-origin-allow-popups": "coop-implemented-with-same-origin-allow-popups",
    "noopener-allow-popups": "coop-implemented-with-noopener-allow-popups",
    "unsafe-none": "coop-implemented-with-unsafe-none",
}
_COEP_RESULTS = {
    "require-corp": "coep-implemented-with-require-corp",
    "credentialless": "coep-implemented-with-credentialless",
    "unsafe-none": "coep-implemented-with-unsafe-none",
}


def _coxp(header: str | None, results: Mapping[str, str], prefix: str) -> TestResult:
    """COOP or COEP: a structured-field token naming a known policy (case matters)."""
    if not header:
        return _result(f"{prefix}-not-implemented", "header not set")
    value = _js_trim(header[:COXP_READ])
    item = _SF_TOKEN_ITEM.fullmatch(value)
    token = item.group(1) if item else ""
    result = results.get(token)
    if result is None:
        return _result(f"{prefix}-header-invalid", f"not a known policy token: {_brief(value)}")
    return _result(result, f"set to {token}")


def _corp(header: str | None) -> TestResult:
    if not header:
        return _result("corp-not-implemented", "header not set (defaults to cross-origin)")
    value = _js_trim(header[:CORP_READ]).lower()
    result = {"same-site": "corp-implemented-with-same-site",
              "same-origin": "corp-implemented-with-same-origin",
              "cross-origin": "corp-implemented-with-cross-origin"}.get(value)  # fmt: skip
    if result is None:
        return _result("corp-header-invalid", f"not a known policy: {_brief(value)}")
    return _result(result, f"set to {value}")


# --- CORS, redirection, Referrer-Policy, X-Content-Type-Options, X-Frame-Options ---------


def _cors(fields: _Fields, origin: str) -> TestResult:
    """Whether the answer to a request with Origin lets any origin read it with credentials."""
    allow = fields.get("access-control-allow-origin")
    if not allow:
        return _result("cross-origin-resource-sharing-not-implemented", "no "
                       "Access-Control-Allow-Origin")  # fmt: skip
    if _js_trim(allow[:ACAO_READ]).lower() == "*":
        return _result("cross-origin-resource-sharing-implemented-with-public-access",
                       "Access-Control-Allow-Origin: *")  # fmt: skip
    credentials = fields.get("access-control-allow-credentials") or ""
    if allow == origin and _js_trim(credentials.lower()) == "true":
        return _result("cross-origin-resource-sharing-implemented-with-universal-access",
                       "reflects any Origin and allows credentials")  # fmt: skip
    return _result("cross-origin-resource-sharing-implemented-with-restricted-access",
                   f"allows {_brief(allow)}")  # fmt: skip


def _redirection(probe: HttpProbe | None) -> TestResult:
    """Where the plain-http URL leads: MDN wants https, on the same host first."""
    if probe is None:
        return _result(REDIRECTION_NOT_EVALUATED, "no plain-http probe (not a bare host)")
    route = probe.route
    if not route:
        return _result("redirection-not-needed-no-http", "http does not answer")
    if not probe.verified:
        return _result("redirection-invalid-cert", "a certificate on the way failed")
    if len(route) == 1:
        return _result("redirection-missing", "http answers without redirecting")
    (scheme0, host0, _), (scheme1, host1, _) = (_split_url(u) for u in route[:2])
    if _split_url(route[-1])[0] != "https":
        return _result("redirection-not-to-https", f"ends on {_brief(route[-1])}")
    if scheme1 == "http":
        return _result("redirection-not-to-https-on-initial-redirection",
                       "first redirect is to http")  # fmt: skip
    if scheme0 == "http" and scheme1 == "https" and host0 != host1:
        return _result("redirection-off-host-from-http", "first redirect leaves the host")
    return _result("redirection-to-https", f"to https in {len(route) - 1} redirect(s)")


_REFERRER_PRIVATE = frozenset(
    {"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"}
)
_REFERRER_UNSAFE = frozenset(
    {"origin", "origin-when-cross-origin", "unsafe-url", "no-referrer-when-downgrade"}
)
_REFERRER_KNOWN = _REFERRER_PRIVATE | _REFERRER_UNSAFE


def _referrer(header: str | None) -> TestResult:
    """The last policy a browser recognises wins (a list is a fallback chain)."""
    if header is None:
        return _result("referrer-policy-not-implemented", "header not set")
    policy = ""
    for item in header.split(","):
        item = _js_trim(item).lower()
        if item in _REFERRER_KNOWN:
            policy = item
    if policy in _REFERRER_PRIVATE:
        return _result("referrer-policy-private", f"set to {policy}")
    if policy in _REFERRER_UNSAFE:
        return _result("referrer-policy-unsafe", f"set to {policy}")
    return _result("referrer-policy-header-invalid", f"no known policy in {_brief(header)}")


def _xcto(header: str | None) -> TestResult:
    if not header:
        return _result("x-content-type-options-not-implemented", "header not set")
    if _js_trim(header[:XCTO_READ]).lower() == "nosniff":
        return _result("x-content-type-options-nosniff", "nosniff")
    return _result("x-content-type-options-header-invalid", f"not nosniff: {_brief(header)}")


def _xfo(header: str | None, frame_ancestors: bool) -> TestResult:
    """X-Frame-Options, superseded by any CSP frame-ancestors, whatever its sources."""
    if frame_ancestors:
        return _result("x-frame-options-implemented-via-csp", "CSP sets frame-ancestors")
    if not header:
        return _result("x-frame-options-not-implemented", "header not set")
    value = _js_trim(header[:XFO_READ]).lower()
    if value in ("deny", "sameorigin"):
        return _result("x-frame-options-sameorigin-or-deny", f"set to {value.upper()}")
    if value.startswith("allow-from"):
        return _result("x-frame-options-allow-from-origin", "ALLOW-FROM (obsolete)")
    return _result("x-frame-options-header-invalid", f"not DENY or SAMEORIGIN: {_brief(header)}")
