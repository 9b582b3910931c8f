"""Run configuration: frozen dataclasses that validate themselves, and TOML defaults loading."""

from __future__ import annotations

import importlib.util
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .models import CSV_COLUMNS, RECORD_FIELDS
from .version import __version__

if TYPE_CHECKING:
    import ssl

DEFAULT_CONCURRENCY = 100
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_USER_AGENT = f"afetch/{__version__}"
DEFAULT_ACCEPT = "*/*"
DEFAULT_MAX_REDIRECTS = 10
METHODS = ("GET", "HEAD")
BACKENDS = ("raw", "httpx")
ORDERS = ("completion", "input")
LOOPS = ("auto", "uvloop", "asyncio")
SCHEMES = ("http", "https", "auto")
HTTP_VERSIONS = ("1.1", "1.0")
FORMATS = ("text", "jsonl", "csv")
# The most ports one --ports list may name: every TCP port once.
MAX_PORT = 65535
DNS_PORT = 53


class ConfigError(ValueError):
    """A bad option value or configuration file; reported as a usage error (exit 2)."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `total` bounds a whole fetch, whatever the server does; `connect` bounds the
    TCP connect plus TLS handshake (as curl's --connect-timeout does)."""

    total: float = DEFAULT_TIMEOUT
    connect: float = DEFAULT_CONNECT_TIMEOUT

    def __post_init__(self) -> None:
        if not self.total > 0:
            raise ConfigError(f"timeout must be positive, got {self.total}")
        if not self.connect > 0:
            raise ConfigError(f"connect timeout must be positive, got {self.connect}")


@dataclass(frozen=True, slots=True)
class Limits:
    """How much runs at once. `reorder_window` bounds results held back by --order input."""

    concurrency: int = DEFAULT_CONCURRENCY
    per_host: int = 0  # concurrent requests to one host:port; 0 = no cap
    rate: float = 0.0  # new requests per second over the whole run; 0 = no cap
    retries: int = 0  # extra tries after a connection error or timeout

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.per_host < 0:
            raise ConfigError(f"per-host must be 0 (no cap) or more, got {self.per_host}")
        if not self.rate >= 0:
            raise ConfigError(f"rate must be 0 (no cap) or positive, got {self.rate}")
        if self.retries < 0:
            raise ConfigError(f"retries must be 0 or more, got {self.retries}")

    @property
    def reorder_window(self) -> int:
        # Enough that one slow host does not stall the run, small enough to stay bounded.
        return max(4 * self.concurrency, 1024)


@dataclass(frozen=True, slots=True)
class Request:
    """What is sent: method, extra headers (after Host, User-Agent and Accept), TLS policy.
    `http2` offers HTTP/2 by ALPN on TLS connections (httpx backend with the h2 package only)."""

    method: str = "GET"
    user_agent: str = DEFAULT_USER_AGENT
    headers: tuple[tuple[str, str], ...] = ()
    verify: bool = True
    cafile: str | None = None
    http_version: str = "1.1"
    follow_redirects: bool = False
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    http2: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.http_version not in HTTP_VERSIONS:
            raise ConfigError(f"http version must be 1.1 or 1.0, got {self.http_version!r}")
        if self.max_redirects < 0:
            raise ConfigError(f"max-redirects must be 0 or more, got {self.max_redirects}")
        for name, value in self.headers:
            if not name or any(c in name for c in " \t\r\n:") or any(c in value for c in "\r\n"):
                raise ConfigError(f"invalid header {name!r}")
        if sum(name.lower() == "host" for name, _ in self.headers) > 1:
            raise ConfigError("more than one Host header (a server answers two with 400)")
        if self.cafile:
            import ssl  # only with --cacert: --help and --version stay fast

            # A file without a certificate is this machine's problem, said once before any
            # fetch, not a tls-error blamed on every host. About 0.5 ms for a one-CA file.
            load_cafile(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), self.cafile)

    @property
    def host_header(self) -> tuple[str, str] | None:
        """A -H Host header: sent instead of the target's authority (to check a virtual host)."""
        return next((h for h in self.headers if h[0].lower() == "host"), None)

    def header_lines(self) -> list[tuple[str, str]]:
        """The header fields to send, Host aside unless -H sets it: then it comes first. Ours
        follow unless the user set the same name (any case), then the user's, as given. Both
        backends send exactly these, in this order (httpx adds no Host when one is given)."""
        given = {name.lower() for name, _ in self.headers}
        base = [
            ("User-Agent", self.user_agent),
            ("Accept", DEFAULT_ACCEPT),
            ("Connection", "close"),
        ]
        host = self.host_header
        own = [h for h in base if h[0].lower() not in given]
        rest = [h for h in self.headers if h is not host]
        return ([host] if host else []) + own + rest


def load_cafile(context: ssl.SSLContext, path: str) -> None:
    """Add the CA certificates of the PEM file `path` to `context`; ConfigError naming the file
    if it cannot be read or holds no certificate."""
    import ssl

    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        reason = "no PEM certificate in it" if exc.reason == "NO_CERTIFICATE_OR_CRL_FOUND" else exc
        raise ConfigError(f"--cacert {path}: {reason}") from None
    except OSError as exc:
        raise ConfigError(f"--cacert {path}: {exc.strerror or exc}") from None


@dataclass(frozen=True, slots=True)
class StatusSet:
    """Status codes and classes such as ``200,3xx``: what --match-status and --filter-status
    take. Empty matches nothing."""

    codes: frozenset[int] = frozenset()
    classes: frozenset[int] = frozenset()  # 3 for 3xx

    @classmethod
    def parse(cls, text: str) -> StatusSet:
        codes: set[int] = set()
        classes: set[int] = set()
        for item in _items(text):
            word = item.lower()
            if re.fullmatch(r"[1-5]xx", word):
                classes.add(int(word[0]))
            elif re.fullmatch(r"[1-5][0-9][0-9]", word):
                codes.add(int(word))
            else:
                raise ConfigError(f"invalid status {item!r} (expected e.g. 200, 404 or 3xx)")
        return cls(frozenset(codes), frozenset(classes))

    def __bool__(self) -> bool:
        return bool(self.codes or self.classes)

    def __contains__(self, status: object) -> bool:
        return isinstance(status, int) and (status in self.codes or status // 100 in self.classes)


def parse_ports(text: str) -> tuple[int, ...]:
    """``80,443,8080-8090`` -> the ports in the order given, each once."""
    ports: dict[int, None] = {}  # an ordered set
    for item in _items(text):
        low, dash, high = item.partition("-")
        if not (low.isdigit() and (high.isdigit() if dash else True)):
            raise ConfigError(f"invalid port {item!r} (expected e.g. 80, 443 or 8080-8090)")
        first, last = int(low), int(high) if dash else int(low)
        if not 1 <= first <= last <= MAX_PORT:
            raise ConfigError(f"invalid port range {item!r} (ports are 1-{MAX_PORT})")
        ports.update(dict.fromkeys(range(first, last + 1)))
    return tuple(ports)


def _items(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    return [item for item in items if item]


@dataclass(frozen=True, slots=True)
class Output:
    """What is written and shown: format and fields, status filters, progress and summary.

    `fields` empty means every field of the format, in its documented order. The names a
    format offers are checked here, so a typo is a usage error before any fetch starts.
    """

    format: str = "text"
    fields: tuple[str, ...] = ()
    match_status: StatusSet = field(default_factory=StatusSet)
    filter_status: StatusSet = field(default_factory=StatusSet)
    progress: bool = True  # a live line on stderr, when stderr is a terminal
    stats: bool = False  # a summary on stderr at the end

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"format must be one of {', '.join(FORMATS)}")
        if self.fields:
            known = field_names(self.format)
            if not known:
                raise ConfigError("--fields applies to --format jsonl and csv only")
            unknown = [name for name in self.fields if name not in known]
            if unknown:
                raise ConfigError(
                    f"unknown field {unknown[0]!r} for --format {self.format}"
                    f" (choose from {', '.join(known)})"
                )

    def shows(self, status_code: int | None) -> bool:
        """Whether a record with this status (None: a failed fetch) is written."""
        if self.match_status and status_code not in self.match_status:
            return False
        return status_code is None or status_code not in self.filter_status


def field_names(format_name: str) -> tuple[str, ...]:
    """The fields --fields may choose from for a format (none for text)."""
    return {"jsonl": RECORD_FIELDS, "csv": CSV_COLUMNS}.get(format_name, ())


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a run needs: the engine and backends read all but `output`."""

    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    request: Request = field(default_factory=Request)
    output: Output = field(default_factory=Output)
    backend: str = "raw"
    order: str = "completion"
    scheme: str = "http"  # for targets given without one; auto = https, else http
    ports: tuple[int, ...] = ()  # each bare host becomes one target per port
    # DNS servers (IP or IP:PORT) to ask instead of the system's; empty: resolv.conf's.
    resolvers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}")
        if self.order not in ORDERS:
            raise ConfigError(f"order must be one of {', '.join(ORDERS)}")
        if self.scheme not in SCHEMES:
            raise ConfigError(f"scheme must be one of {', '.join(SCHEMES)}")
        if self.request.http2:
            if self.backend != "httpx":
                raise ConfigError("--http2 needs --backend httpx (the raw backend speaks HTTP/1.x)")
            if importlib.util.find_spec("h2") is None:
                raise ConfigError("--http2 needs the h2 package: pip install 'afetch[http2]'")
        if self.backend == "httpx" and self.request.http_version != "1.1":
            raise ConfigError("the httpx backend sends HTTP/1.1 requests only")
        for port in self.ports:
            if not 1 <= port <= MAX_PORT:
                raise ConfigError(f"port out of range: {port}")
        for resolver in self.resolvers:
            parse_nameserver(resolver)


# Where --cluster local:N starts a Dask LocalCluster of N worker processes on this host.
LOCAL_CLUSTER = "local:"


@dataclass(frozen=True, slots=True)
class Fanout:
    """How a run is spread (scale.py): over `workers` processes on this host, over a Dask
    cluster, or (neither) in this process alone; and which shard of the input it takes.
    Workers get the Config, never this: it is about where the work runs, not what it is."""

    workers: int = 0  # worker processes; 0: fetch in this process
    cluster: str | None = None  # a Dask scheduler's address (tcp://host:8786), or local:N
    shard: tuple[int, int] | None = None  # (K, N), 1 <= K <= N: this run's share of the hosts

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"workers must be 1 or more, got {self.workers}")
        if self.workers and self.cluster:
            raise ConfigError("--workers and --cluster exclude each other: choose one")
        if self.cluster is not None:
            if not self.cluster.strip():
                raise ConfigError("--cluster: empty address")
            if self.cluster.startswith(LOCAL_CLUSTER):
                count = self.cluster[len(LOCAL_CLUSTER) :]
                if not (count.isdigit() and int(count) >= 1):
                    raise ConfigError(f"--cluster {self.cluster}: expected local:N, N >= 1")
        if self.shard is not None:
            k, n = self.shard
            if not 1 <= k <= n:
                raise ConfigError(f"shard must be K/N with 1 <= K <= N, got {k}/{n}")

    @property
    def parallel(self) -> bool:
        """Whether records are fetched outside this process."""
        return bool(self.workers or self.cluster)

    def check(self, config: Config) -> None:
        """Refuse what cannot be kept across workers. A --per-host cap holds by sending each
        host to one chunk at a time; input order holds by writing chunks in input order; both
        at once would need chunks that are neither, so the pair is refused."""
        if self.parallel and config.limits.per_host and config.order == "input":
            raise ConfigError(
                "--per-host with --order input cannot both be kept across workers:"
                " drop one, or run without --workers/--cluster"
            )


def parse_workers(text: str) -> int:
    """--workers: N >= 1, or auto: the CPUs this process may run on."""
    import os

    if text.strip().lower() == "auto":
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not on this platform
            return os.cpu_count() or 1
    if not (text.strip().isdigit() and int(text) >= 1):
        raise ConfigError(f"invalid worker count {text!r} (expected N >= 1 or auto)")
    return int(text)


def parse_shard(text: str) -> tuple[int, int] | None:
    """--shard K/N -> (K, N); empty -> None (the whole input)."""
    if not text.strip():
        return None
    k, slash, n = text.strip().partition("/")
    if not (slash and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise ConfigError(f"invalid shard {text!r} (expected K/N with 1 <= K <= N, e.g. 2/4)")
    return int(k), int(n)


def parse_nameserver(text: str) -> tuple[str, int]:
    """(ip, port) from a --resolver value: IPv4, IPv4:PORT, IPv6, or [IPv6]:PORT; port 53 if
    none is given. Raises ConfigError naming the value."""
    host, colon, port = text, "", ""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        colon, port = rest[:1], rest[1:]
        if not bracket or colon not in ("", ":"):
            host = ""  # unbalanced, or junk after the bracket: invalid below
    elif text.count(":") == 1:  # more than one colon: a bare IPv6 address
        host, colon, port = text.partition(":")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"invalid resolver {text!r}: expected IP or IP:PORT") from None
    if not colon:
        return str(ip), DNS_PORT
    if not (port.isascii() and port.isdigit() and 0 < int(port) <= MAX_PORT):
        raise ConfigError(f"invalid resolver {text!r}: port must be 1-65535")
    return str(ip), int(port)


# The TOML type of a config file value, as its option declares it ("number": integer or float).
TomlType = Literal["string", "integer", "number", "boolean"]
# A wrong string value is quoted in the error up to this many characters: one line stays short.
SHOWN_CHARS = 40


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """A key a config file may set: the parameter it sets and the TOML type of its value.
    `repeated`: a list of that type; a lone value is taken as a list of one."""

    name: str
    type: TomlType
    repeated: bool = False


def load_toml_defaults(path: str | Path, keys: Mapping[str, ConfigKey]) -> dict[str, Any]:
    """Read a TOML file of option defaults into a click default_map: parameter name -> value.

    Keys are long option names (``connect-timeout``). An unknown key, or a value of another
    type than its key's, raises ConfigError naming the file and the key.
    """
    import tomllib  # only when there is a file to read: it costs a few ms at start-up

    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    defaults: dict[str, Any] = {}
    for name, value in data.items():
        key = keys.get(name)
        if key is None:
            raise ConfigError(f"{path}: unknown key {name!r}")
        values = value if key.repeated and isinstance(value, list) else [value]
        for item in values:
            if not _is_a(item, key.type):
                expected = f"a list of {key.type}s" if key.repeated else _ARTICLES[key.type]
                raise ConfigError(f"{path}: key {name!r}: expected {expected}, got {_toml(item)}")
        defaults[key.name] = values if key.repeated else value
    return defaults


_ARTICLES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
}


def _is_a(value: Any, kind: TomlType) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, never a number to TOML
        return kind == "boolean"
    if kind == "integer":
        return isinstance(value, int)
    if kind == "number":
        return isinstance(value, (int, float))
    return kind == "string" and isinstance(value, str)


def _toml(value: Any) -> str:
    """A TOML value as an error names it: its TOML type, and the value when it is short."""
    import datetime
    import json

    if isinstance(value, bool):
        return f"a boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"an integer {value}"
    if isinstance(value, float):
        return f"a float {value}"
    if isinstance(value, str):
        if len(value) > SHOWN_CHARS:
            return f'a string {json.dumps(value[:SHOWN_CHARS], ensure_ascii=False)[:-1]}..."'
        return f"a string {json.dumps(value, ensure_ascii=False)}"
    if isinstance(value, datetime.datetime):
        return f"a date-time {value.isoformat()}"
    if isinstance(value, datetime.date):
        return f"a date {value.isoformat()}"
    if isinstance(value, datetime.time):
        return f"a time {value.isoformat()}"
    return "an array" if isinstance(value, list) else "a table"
