"""Turn one input line into a Target, or an InvalidInput error saying why it cannot be one.

Accepted forms: ``host``, ``host:port``, ``scheme://host[:port][/path][?query]`` (http, https),
IPv4 addresses, ``[IPv6]``, ``[IPv6]:port`` and a bare IPv6 address without a port.
Internationalised names are converted to their ASCII (IDNA 2008, UTS #46) form.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import quote

import idna

from .errors import InvalidInput

DEFAULT_PORTS = {"http": 80, "https": 443}

# A DNS label as found in the wild: letters, digits, hyphens and underscores (SRV-style names
# such as _dmarc are real hosts too), 1-63 characters.
_LABEL_PATTERN = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_LABEL = re.compile(_LABEL_PATTERN + r"\Z")
# Longest input line taken as a target. Browsers and servers cap URLs around 8 KiB; anything
# longer is not a host list entry.
MAX_TARGET_LENGTH = 8 * 1024
# Longest host name, in ASCII (RFC 1035's 255 octets on the wire, less the length bytes).
MAX_HOST_LENGTH = 253
# Dotted-quad shape: only these are parsed as IPv4 (and must then be valid), which keeps the
# slow ipaddress parse off the path of every host name.
IPV4_SHAPE = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\Z")
# A valid dotted quad: octets 0-255 in ASCII digits without leading zeros, as
# ipaddress.IPv4Address insists, checked in one match.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}\Z")
# Whitespace or control characters (C0, DEL, C1) anywhere in a target.
_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_AUTHORITY_END = re.compile(r"[/?#]")
# RFC 3986 scheme syntax: only such a prefix before "://" is read as a scheme.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*\Z")
# A path that needs no percent-encoding (the common case, checked before calling quote).
_PLAIN_PATH_CHARS = r"[A-Za-z0-9/%:@!$&'()*+,;=?~._-]"
_PLAIN_PATH = re.compile(_PLAIN_PATH_CHARS + r"*\Z")
# Characters left as they are in the request target; everything else is percent-encoded.
_PATH_SAFE = "/%:@!$&'()*+,;=?~-._"
# The line nearly every host list is made of, `[http[s]://]name-or-IPv4[:port][/plain path]`,
# checked in one match: a third of the general parse's cost, on every target of a large run.
# Every line it does not take (an upper-case scheme, IPv6, IDN, a fragment, a path to encode,
# anything wrong) goes the general way, which makes the same Target of the lines both accept
# (a property test holds the two to that).
_SIMPLE = re.compile(
    rf"(?:(https?)://)?((?:{_LABEL_PATTERN}\.)*{_LABEL_PATTERN}\.?)(?::([0-9]{{1,5}}))?"
    rf"(/{_PLAIN_PATH_CHARS}*)?\Z"
)


@dataclass(frozen=True, slots=True)
class Target:
    """One thing to fetch: where to connect and what to ask for."""

    input: str
    scheme: str
    host: str  # ASCII hostname or IP address, IPv6 without brackets
    port: int
    path: str = "/"
    # Whether the line named the scheme / the port, or they came from the defaults: --scheme
    # auto probes only the scheme it chose, --ports expands only bare hosts.
    explicit_scheme: bool = field(default=True, compare=False)
    explicit_port: bool = field(default=True, compare=False)

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @property
    def authority(self) -> str:
        """host[:port] as it goes in a URL and in the Host header (port only if not default)."""
        host = f"[{self.host}]" if self.is_ipv6 else self.host
        if DEFAULT_PORTS[self.scheme] == self.port:
            return host
        return f"{host}:{self.port}"

    @property
    def host_port(self) -> str:
        """host:port with the port always shown, e.g. example.com:8080 or [::1]:443."""
        host = f"[{self.host}]" if self.is_ipv6 else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path}"


def is_skipped(line: str) -> bool:
    """Blank lines and comment lines are not targets and produce no record."""
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def parse_target(line: str, default_scheme: str = "http") -> Target:
    """Parse one input line; raise InvalidInput with a one-line reason if it is not a target."""
    text = line.strip()
    simple = _SIMPLE.match(text) if len(text) <= MAX_TARGET_LENGTH else None
    if simple is not None:
        scheme, name, port_text, path = simple.groups()
        port = int(port_text) if port_text is not None else None
        if len(name) <= MAX_HOST_LENGTH and (port is None or 1 <= port <= 65535):
            chosen = scheme or default_scheme
            return Target(
                input=text,
                scheme=chosen,
                # A dotted quad is still checked octet by octet; a name is valid as matched.
                host=_hostname(name) if IPV4_SHAPE.match(name) else name.lower(),
                port=port if port is not None else DEFAULT_PORTS[chosen],
                path=path or "/",
                explicit_scheme=scheme is not None,
                explicit_port=port is not None,
            )
    return _parse_general(text, default_scheme)


def _parse_general(text: str, default_scheme: str) -> Target:
    """Every form parse_target accepts, and the reason for every line it refuses."""
    if not text:
        raise InvalidInput("empty target")
    if len(text) > MAX_TARGET_LENGTH:
        raise InvalidInput(f"target longer than {MAX_TARGET_LENGTH} characters")
    bad = _FORBIDDEN.search(text)
    if bad is not None:
        what = "whitespace" if bad.group().isspace() else "control characters"
        raise InvalidInput(f"target contains {what}")

    scheme, sep, rest = text.partition("://")
    if sep and not _SCHEME.match(scheme):
        sep = ""  # "://" inside a path or query (host/?u=http://x), not after a scheme
    if sep:
        scheme = scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise InvalidInput(f"unsupported scheme {scheme!r} (http and https only)")
    else:
        scheme, rest = default_scheme, text

    split = _AUTHORITY_END.search(rest)
    if split is None:
        authority, path = rest, "/"
    else:
        authority, path = rest[: split.start()], rest[split.start() :].partition("#")[0]
        if not path.startswith("/"):
            path = "/" + path
        if not _PLAIN_PATH.match(path):
            path = quote(path, safe=_PATH_SAFE)

    if "@" in authority:
        raise InvalidInput("credentials in the target are not supported")
    host, port = _split_authority(authority)
    return Target(
        input=text,
        scheme=scheme,
        host=host,
        port=port if port is not None else DEFAULT_PORTS[scheme],
        path=path,
        explicit_scheme=bool(sep),
        explicit_port=port is not None,
    )


def _split_authority(authority: str) -> tuple[str, int | None]:
    if not authority:
        raise InvalidInput("empty host")
    if authority.startswith("["):
        inside, bracket, after = authority[1:].partition("]")
        if not bracket:
            raise InvalidInput("unclosed '[' in IPv6 address")
        if after and not after.startswith(":"):
            raise InvalidInput(f"unexpected text after IPv6 address: {after!r}")
        return _ipv6(inside), _port(after[1:]) if after else None
    if "]" in authority:
        raise InvalidInput("unmatched ']' in target")
    if authority.count(":") > 1:
        # A bare IPv6 address; with a port it would need brackets.
        return _ipv6(authority), None
    name, colon, port_text = authority.partition(":")
    port = _port(port_text) if colon else None
    return _hostname(name), port


def _ipv6(text: str) -> str:
    try:
        return ipaddress.IPv6Address(text).compressed
    except ValueError:
        raise InvalidInput(f"invalid IPv6 address: {text!r}") from None


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise InvalidInput(f"invalid port: {text!r}")
    port = int(text)
    if not 1 <= port <= 65535:
        raise InvalidInput(f"port out of range: {port}")
    return port


def _hostname(name: str) -> str:
    if not name:
        raise InvalidInput("empty host")
    if IPV4_SHAPE.match(name):  # \d: other scripts' digits are refused here, not resolved
        if _IPV4.match(name):
            return name
        raise InvalidInput(f"invalid IPv4 address: {name!r}")
    if name.isascii():
        ascii_name = name.lower()
    else:
        try:
            ascii_name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidInput(f"invalid internationalised host name: {exc}") from None
    labels = ascii_name.removesuffix(".").split(".")
    if len(ascii_name) > MAX_HOST_LENGTH or not all(_LABEL.match(label) for label in labels):
        raise InvalidInput(f"invalid host name: {name!r}")
    return ascii_name
