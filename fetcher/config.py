"""Run configuration: frozen dataclasses that validate themselves, each option declared once on
the field it sets (fetcher.options), and TOML defaults loading."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from . import extras
from .options import ConfigError as ConfigError
from .options import Spec, check_fields, option, specs_of, switch
from .records import StatusSet as StatusSet
from .records import check_fields as check_record_fields
from .records import graded_below, parse_names, shown
from .version import __version__

if TYPE_CHECKING:
    import ssl

DEFAULT_CONCURRENCY = 100
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_USER_AGENT = f"afetch/{__version__}"
DEFAULT_ACCEPT = "*/*"
DEFAULT_MAX_REDIRECTS = 10
# Methods whose requests are expected to carry content: sent with Content-Length: 0 (as httpx
# does), so a server neither waits for a body nor answers 411 Length Required.
CONTENT_METHODS = frozenset({"POST", "PUT", "PATCH"})
# An RFC 9110 token (section 5.6.2): what a method may be.
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
BACKENDS = ("raw", "httpx")
ORDERS = ("completion", "input")
LOOPS = ("auto", "uvloop", "asyncio")
SCHEMES = ("http", "https", "auto")
HTTP_VERSIONS = ("1.1", "1.0")
FORMATS = ("text", "line", "jsonl", "csv")
STDOUT = "-"  # as the -o FILE: the JSON Lines records go to stdout
# The most ports one --ports list may name: every TCP port once.
MAX_PORT = 65535
DNS_PORT = 53
DEFAULT_HTTP_PORT = 80


def _refuse(problem: str | None) -> None:
    if problem:
        raise ConfigError(problem)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `total` bounds a whole fetch, whatever the server does; `connect` bounds the
    TCP connect plus TLS handshake (as curl's --connect-timeout does)."""

    total: float = option(
        DEFAULT_TIMEOUT, "-t", "--timeout", "-m", "--max-time", group="Request", minimum=0,
        above=True, metavar="SECONDS", help="Seconds per request at most.",
    )  # fmt: skip
    connect: float = option(
        DEFAULT_CONNECT_TIMEOUT, "--connect-timeout", group="Request", minimum=0, above=True,
        metavar="SECONDS", help="Seconds for the TCP connect plus TLS handshake.",
    )  # fmt: skip

    def __post_init__(self) -> None:
        _refuse(check_fields(self))


@dataclass(frozen=True, slots=True)
class Limits:
    """How much runs at once. `reorder_window` bounds results held back by --order input."""

    concurrency: int = option(
        DEFAULT_CONCURRENCY, "-c", "--concurrency", group="Concurrency", minimum=1,
        metavar="N", help="Targets in flight at once.",
    )  # fmt: skip
    per_host: int = option(
        0, "--per-host", group="Concurrency", minimum=0, metavar="N",
        shown_default="0: no cap", help="Requests in flight at once to one host:port.",
    )  # fmt: skip
    rate: float = option(
        0.0, "--rate", group="Concurrency", minimum=0, metavar="R", shown_default="0: no cap",
        help="New requests per second, over the whole run.",
    )  # fmt: skip
    retries: int = option(
        0, "--retries", "--retry", group="Request", minimum=0, metavar="N",
        help="Retries on connection error or timeout.",
    )  # fmt: skip

    def __post_init__(self) -> None:
        _refuse(check_fields(self))

    @property
    def reorder_window(self) -> int:
        # Enough that one slow host does not stall the run, small enough to stay bounded.
        return max(4 * self.concurrency, 1024)


def parse_header(text: str) -> tuple[str, str]:
    """``Name: value`` -> (name, value), the value stripped."""
    name, colon, content = text.partition(":")
    if not colon or not name.strip() or name != name.strip():
        raise ConfigError(f"expected 'Name: value', got {text!r}")
    return (name, content.strip())


@dataclass(frozen=True, slots=True)
class Request:
    """What is sent: method, extra headers (after Host, User-Agent and Accept), TLS policy.
    `http2` offers HTTP/2 by ALPN on TLS connections (httpx backend with the h2 package only).
    `audit` (--audit) adds an Origin header and implies following redirects; the plain-http
    probe of a bare host whose https answered goes to `audit_http_port` (MDN's httpPort)."""

    method: str = option(
        "GET", "-X", "--method", group="Request", metavar="METHOD",
        help="Request method: GET, HEAD, OPTIONS... (no body).",
        also=(Spec(("-I", "--head"), "Same as -X HEAD.", "Request", flag=True, sets="HEAD",
                   configurable=False),),
    )  # fmt: skip
    headers: tuple[tuple[str, str], ...] = option(
        (), "-H", "--header", group="Request", multiple=True, parse=parse_header,
        env_splitter="\n", metavar="'NAME: VALUE'", shown_default="none",
        help="Extra request header (repeatable).",
    )  # fmt: skip
    user_agent: str = option(
        DEFAULT_USER_AGENT, "-A", "--user-agent", group="Request", help="User-Agent header."
    )
    http_version: str = option(
        "1.1", "--http1.0", group="Request", flag=True, sets="1.0",
        help="Send HTTP/1.0 requests instead of HTTP/1.1.",
    )  # fmt: skip
    verify: bool = switch(
        "-k", "--insecure", group="Request", sets=False, help="Do not verify TLS certificates."
    )
    cafile: str | None = option(
        None, "--cacert", group="Request", path="file", shown_default="none",
        help="Also trust the CA certificates in this PEM FILE.",
    )  # fmt: skip
    tls_info: bool = switch(  # the record's `tls` object (README "TLS facts")
        "--no-tls-info", group="Request", sets=False,
        help="No tls object in https records (skips its cost).",
    )  # fmt: skip
    follow_redirects: bool = switch(
        "-L", "--follow-redirects", group="Request", help="Follow redirects (http and https only)."
    )
    max_redirects: int = option(
        DEFAULT_MAX_REDIRECTS, "--max-redirects", "--max-redirs", group="Request", minimum=0,
        metavar="N", help="More redirects is an error (-L).",
    )  # fmt: skip
    http2: bool = switch(
        "--http2", group="Request", help="Offer HTTP/2 over TLS (needs --backend httpx)."
    )
    audit: bool = switch(
        "--audit", group="Request",
        help="Grade security headers as MDN's Observatory (-L, --scheme auto).",
    )  # fmt: skip
    audit_http_port: int = DEFAULT_HTTP_PORT  # library only: tests move it off port 80

    def __post_init__(self) -> None:
        _refuse(check_fields(self))
        if not TOKEN.fullmatch(self.method):
            raise ConfigError(
                f"method must be an HTTP token such as GET or OPTIONS, got {self.method!r}"
            )
        # In capitals, as httpx sends every method whatever it is given: both backends agree.
        object.__setattr__(self, "method", self.method.upper())
        if self.method == "CONNECT":
            raise ConfigError("method CONNECT asks a proxy for a tunnel: use -x/--proxy URL")
        if not 1 <= self.audit_http_port <= MAX_PORT:
            raise ConfigError(f"audit http port out of range: {self.audit_http_port}")
        if self.http_version not in HTTP_VERSIONS:
            raise ConfigError(f"http version must be 1.1 or 1.0, got {self.http_version!r}")
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
    def follows_redirects(self) -> bool:
        """-L, or --audit, which grades where a browser would end up (as MDN does)."""
        return self.follow_redirects or self.audit

    @property
    def origin(self) -> str | None:
        """The Origin sent under --audit: a -H Origin as given, else the audit's own."""
        if not self.audit:
            return None
        given = next((v for name, v in self.headers if name.lower() == "origin"), None)
        if given is not None:
            return given
        from .audit import AUDIT_ORIGIN  # the grader loads only under --audit (~30 ms)

        return AUDIT_ORIGIN

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
        if self.method in CONTENT_METHODS:
            base.append(("Content-Length", "0"))
        origin = self.origin
        if origin is not None:  # --audit: MDN judges CORS by the answer to an Origin
            base.append(("Origin", origin))
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


def parse_grade(text: str) -> str | None:
    """``b+`` -> ``B+``, one of MDN's grades; empty -> None (no --min-grade)."""
    if not text.strip():
        return None
    from .audit import GRADES  # only with --min-grade: the grader costs ~30 ms to import

    grade = text.strip().upper()
    if grade not in GRADES:
        raise ConfigError(f"invalid grade {text!r} (choose from {', '.join(GRADES)})")
    return grade


def _items(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    return [item for item in items if item]


def parse_days(text: str) -> int | None:
    """--cert-expires-within: a whole number of days, 0 or more; empty: no filter."""
    text = text.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):
        raise ConfigError(f"expected a whole number of days (0 or more), got {text!r}")
    return int(text)


@dataclass(frozen=True, slots=True)
class Output:
    """What is written and shown: format and fields, status filters, progress and summary.

    `fields` empty means every field of the format, in its documented order. The names a
    format offers are checked here, so a typo is a usage error before any fetch starts.
    """

    format: str = option(
        "text", "--format", group="Output", choices=FORMATS, case_sensitive=False,
        metavar="FORMAT", help="text, line (one per target), jsonl or csv.",
        also=(Spec(("-j", "--json"), "Same as --format jsonl.", "Output", flag=True, sets="jsonl",
                   configurable=False),),
    )  # fmt: skip
    fields: tuple[str, ...] = option(
        (), "--fields", group="Output", parse=parse_names, metavar="NAMES",
        shown_default="all", help="Fields to write (line, jsonl, csv), comma-separated.",
    )  # fmt: skip
    match_status: StatusSet = option(
        StatusSet(), "--match-status", group="Output", parse=StatusSet.parse, metavar="CODES",
        shown_default="any", help="Write only responses with these statuses (200,3xx).",
    )  # fmt: skip
    filter_status: StatusSet = option(
        StatusSet(), "--filter-status", group="Output", parse=StatusSet.parse, metavar="CODES",
        shown_default="none", help="Hide responses with these statuses, e.g. 404,5xx.",
    )  # fmt: skip
    cert_expires_within: int | None = option(  # days; None: every record
        None, "--cert-expires-within", group="Output", parse=parse_days, metavar="DAYS",
        shown_default="any", help="Only records whose certificate expires within DAYS.",
    )  # fmt: skip
    min_grade: str | None = option(  # --audit: write only the targets graded below this
        None, "--min-grade", group="Output", parse=parse_grade, metavar="GRADE",
        shown_default="none", help="With --audit: write only targets graded below it.",
    )  # fmt: skip
    progress: bool = switch(  # a live line on stderr, when stderr is a terminal
        "-q", "--quiet", group="Output", sets=False, help="No progress line on the terminal."
    )
    stats: bool = switch("--stats", group="Output", help="Print a summary on stderr at the end.")
    silent: bool = switch(
        "-s", "--silent", group="Output",
        help="Only errors (and --stats) on stderr: no progress, warning, note.",
    )  # fmt: skip
    verbose: bool = switch(
        "-v", "--verbose", group="Output",
        help="Each request and its connection steps on stderr, as curl -v.",
    )  # fmt: skip

    def __post_init__(self) -> None:
        _refuse(check_fields(self))
        check_record_fields(self.format, self.fields)
        if self.min_grade is not None:
            parse_grade(self.min_grade)  # a library caller's value, checked as typed ones are

    def shows(self, status_code: int | None, grade: str | None = None) -> bool:
        """Whether a record with this status (None: a failed fetch) and audit grade (None: not
        graded) is written."""
        if self.min_grade is not None and not graded_below(grade, self.min_grade):
            return False
        return shown(status_code, self.match_status, self.filter_status)


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a run needs: the engine and backends read all but `output`."""

    request: Request = Request()
    timeouts: Timeouts = Timeouts()
    limits: Limits = Limits()
    output: Output = Output()
    backend: str = option(
        "raw", "--backend", group="Request", choices=BACKENDS, case_sensitive=False,
        help="raw: afetch's HTTP/1 parser; httpx: httpcore.",
    )  # fmt: skip
    # DNS servers (IP or IP:PORT) to ask instead of the system's; empty: resolv.conf's.
    resolvers: tuple[str, ...] = option(
        (), "--resolver", group="Request", multiple=True, metavar="IP[:PORT]",
        help="DNS server to ask instead of the system's (repeatable).",
    )  # fmt: skip
    # Connect to ADDR for HOST:PORT, keeping HOST for Host, SNI and the certificate check.
    pins: tuple[str, ...] = option(
        (), "--resolve", group="Request", multiple=True, metavar="HOST:PORT:ADDR",
        shown_default="none", help="Connect to ADDR for HOST:PORT (*: any port).",
    )  # fmt: skip
    proxy: str | None = option(
        None, "-x", "--proxy", group="Request", metavar="URL", shown_default="none",
        help="http|socks5|socks5h://[USER:PASS@]HOST[:PORT].",
    )  # fmt: skip
    proxy_env: bool = switch(
        "--proxy-env",
        group="Request",
        help="Without -x: HTTPS_PROXY, http_proxy, ALL_PROXY and NO_PROXY.",
    )
    order: str = option(
        "completion", "--order", group="Concurrency", choices=ORDERS, case_sensitive=False,
        help="Order results by completion or by input.",
    )  # fmt: skip
    # For targets given without one: http, https or auto (https, then http); None: http, or
    # auto under --audit (MDN grades https://host/ where it answers).
    scheme: str | None = option(
        None, "--scheme", group="Input", choices=SCHEMES, case_sensitive=False,
        shown_default="http", help="Scheme for bare targets (auto: https, then http).",
    )  # fmt: skip
    ports: tuple[int, ...] = option(  # each bare host becomes one target per port
        (), "-p", "--ports", group="Input", parse=parse_ports, metavar="PORTS",
        empty="empty port list",
        shown_default="none", help="Ports for bare hosts, e.g. 80,443,8080-8090.",
    )  # fmt: skip
    # The resolvers parsed, (ip, port) each: what the backends' Resolver asks. Set by
    # __post_init__, the one place a --resolver value is read.
    nameservers: tuple[tuple[str, int], ...] = dataclasses.field(
        default=(), init=False, repr=False, compare=False
    )

    @property
    def bare_scheme(self) -> str:
        """The scheme of targets given without one: --scheme, else http (auto under --audit)."""
        if self.scheme is not None:
            return self.scheme
        return "auto" if self.request.audit else "http"

    def __post_init__(self) -> None:
        _refuse(check_fields(self))
        if self.output.min_grade is not None and not self.request.audit:
            raise ConfigError("--min-grade needs --audit (the grade it filters by)")
        if self.request.http2:
            if self.backend != "httpx":
                raise ConfigError("--http2 needs --backend httpx (the raw backend speaks HTTP/1.x)")
            extras.H2.require()
        if self.backend == "httpx" and self.request.http_version != "1.1":
            raise ConfigError("the httpx backend sends HTTP/1.1 requests only")
        for port in self.ports:
            if not 1 <= port <= MAX_PORT:
                raise ConfigError(f"port out of range: {port}")
        object.__setattr__(self, "nameservers", tuple(map(parse_nameserver, self.resolvers)))
        from .resolve import parse_pin  # resolve.py imports this module

        for pin in self.pins:
            parse_pin(pin)
        if self.proxy is not None or self.proxy_env:
            from .proxy import Proxies

            if self.request.http2:
                raise ConfigError("--http2 does not go through a proxy yet: drop one or the other")
            if Proxies(self.proxy, self.proxy_env).socks:  # the URL, or the environment's, is valid
                extras.SOCKS.require()
        if self.resolvers:
            extras.AIODNS.require()  # the getaddrinfo fallback asks the system's servers only

    @classmethod
    def from_options(cls, values: Mapping[str, Any]) -> Config:
        """A Config from the command line's flat values (click parameter name -> value)."""
        config: Config = _build(cls, values)
        return config


@dataclass(frozen=True, slots=True)
class Run:
    """What the command reads and writes around the Config: list files, the -o file, the loop."""

    loop: str = option(
        "auto", "--loop", group="Concurrency", choices=LOOPS, case_sensitive=False,
        help="Event loop (auto: uvloop if installed).",
    )  # fmt: skip
    lists: tuple[str, ...] = option(
        (), "-l", "--list", group="Input", multiple=True, path="list", configurable=False,
        help="Read targets from FILE (repeatable; - is stdin).",
    )  # fmt: skip
    output: str | None = option(
        None, "-o", "--output", group="Output", path="output", configurable=False,
        help="Also write every record to FILE, as JSON Lines.",
    )  # fmt: skip
    append: bool = switch(
        "--append", group="Output", configurable=False,
        help="With -o FILE: append to it instead of starting afresh.",
    )  # fmt: skip
    resume: bool = switch(
        "--resume", group="Output", configurable=False,
        help="With -o FILE: skip the targets it has records for, append.",
    )  # fmt: skip

    def __post_init__(self) -> None:
        _refuse(check_fields(self))
        for flag, wanted in (("--resume", self.resume), ("--append", self.append)):
            if wanted and (not self.output or self.output == STDOUT):
                raise ConfigError(f"{flag} needs -o FILE: the file it continues")

    @classmethod
    def from_options(cls, values: Mapping[str, Any]) -> Run:
        run: Run = _build(cls, values)
        return run


def declared(cls: type[Any] = Config, prefix: str = "") -> Iterator[tuple[str, Spec]]:
    """(field path, option) for every option of `cls` and its parts, in declaration order:
    ("limits.concurrency", -c/--concurrency)."""
    for item in dataclasses.fields(cls):
        default = item.default
        if dataclasses.is_dataclass(default) and not specs_of(item):
            yield from declared(type(default), f"{prefix}{item.name}.")
        for spec in specs_of(item):
            yield f"{prefix}{item.name}", spec


def default_of(cls: type[Any], path: str) -> Any:
    """The default of a field path of `cls`: the option's default, written only there."""
    value: Any = cls()
    for name in path.split("."):
        value = getattr(value, name)
    return value


def _parsed(spec: Spec, value: Any) -> Any:
    """Text through the option's parser (as the command line gives it); anything else as is."""
    return spec.parse(value) if spec.parse is not None and isinstance(value, str) else value


def _build(cls: type[Any], values: Mapping[str, Any]) -> Any:
    """`cls` from flat option values, text or parsed: a flag given sets its field, another
    option's value is the field's; each part is made with dataclasses.replace, so it validates
    itself."""
    fields: dict[str, Any] = {}
    for path, spec in declared(cls):
        if spec.name not in values:
            continue
        value = values[spec.name]
        if spec.flag:
            if value:
                fields[path] = spec.sets
        elif spec.multiple:
            fields[path] = tuple(_parsed(spec, item) for item in value)
        else:
            fields[path] = _parsed(spec, value)
    parts: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for path, value in fields.items():
        part, dot, name = path.partition(".")
        if dot:
            parts.setdefault(part, {})[name] = value
        else:
            top[path] = value
    base = cls()
    for part, part_fields in parts.items():
        top[part] = dataclasses.replace(getattr(base, part), **part_fields)
    return cls(**top)


# Where --cluster local:N starts a Dask LocalCluster of N worker processes on this host.
LOCAL_CLUSTER = "local:"


@dataclass(frozen=True, slots=True)
class Fanout:
    """How a run is spread (scale.py): over `workers` processes on this host, over a Dask
    cluster, or (neither) in this process alone; and which shard of the input it takes.
    Workers get the Config, never this: it is about where the work runs, not what it is."""

    workers: int = option(  # worker processes; 0: fetch in this process
        0, "--workers", group="Concurrency", parse=lambda text: parse_workers(text),
        metavar="N|auto", shown_default="none", help="Fetch in N processes (auto: per CPU).",
    )  # fmt: skip
    cluster: str | None = option(  # a Dask scheduler's address (tcp://host:8786), or local:N
        None, "--cluster", group="Concurrency", metavar="ADDRESS", configurable=False,
        shown_default="none", help="Fetch on Dask: tcp://HOST:8786, local:N.",
    )  # fmt: skip
    shard: tuple[int, int] | None = option(  # (K, N), 1 <= K <= N: this run's share of hosts
        None, "--shard", group="Input", parse=lambda text: parse_shard(text), metavar="K/N",
        configurable=False, shown_default="all", help="Fetch share K of N of the hosts only.",
    )  # fmt: skip

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

    @classmethod
    def from_options(cls, values: Mapping[str, Any]) -> Fanout:
        fanout: Fanout = _build(cls, values)
        return fanout

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
    """--workers: N >= 1, or auto: the CPUs this process may run on; empty: 0, none."""
    import os

    if not text.strip():
        return 0
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


# The TOML type of a config file value, as its option declares it ("number": integer or float;
# "text": a string or an integer, given to the option's parser as the digits typed).
TomlType = Literal["string", "text", "integer", "number", "boolean"]
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
            near = nearest(name, keys)
            hint = f"; did you mean {near!r}?" if near else ""
            raise ConfigError(f"{path}: unknown key {name!r}{hint}")
        values = value if key.repeated and isinstance(value, list) else [value]
        for item in values:
            if not _is_a(item, key.type):
                expected = _ARTICLES[key.type]
                if key.repeated:  # "a list of strings or integers"
                    expected = "a list of " + expected.replace(" or an ", "s or ")[2:] + "s"
                raise ConfigError(f"{path}: key {name!r}: expected {expected}, got {_toml(item)}")
        if key.type == "text":
            values = [str(item) for item in values]
        defaults[key.name] = values if key.repeated else values[0]
    return defaults


def nearest(name: str, names: Iterable[str]) -> str | None:
    """The name of `names` nearest `name` (difflib's ratio of 0.6 or more), or None."""
    import difflib

    close = difflib.get_close_matches(name, list(names), n=1)
    return close[0] if close else None


_ARTICLES = {
    "string": "a string",
    "text": "a string or an integer",
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
    if kind == "text":
        return isinstance(value, (str, int))
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
