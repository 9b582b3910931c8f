"""The afetch command: options -> Config -> runner.run -> exit code. No I/O logic lives here."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from .config import (
    BACKENDS,
    DEFAULT_CONCURRENCY,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_TIMEOUT,
    DEFAULT_USER_AGENT,
    FORMATS,
    LOOPS,
    METHODS,
    ORDERS,
    SCHEMES,
    Config,
    ConfigError,
    ConfigKey,
    Fanout,
    Limits,
    Output,
    Request,
    StatusSet,
    Timeouts,
    TomlType,
    load_toml_defaults,
    parse_ports,
    parse_shard,
    parse_workers,
)
from .status import ExitCode
from .version import __version__

ENV_PREFIX = "AFETCH"
POSITIVE = click.FloatRange(min=0, min_open=True)
# Options that make no sense as configured defaults (and so have no AFETCH_* variable).
_NOT_CONFIG = {
    "config", "version", "help", "lists", "json_output", "output", "append", "resume",
    "cluster", "shard",  # where and which part of this one run: named on its command line
}  # fmt: skip
# --help shows the options in these groups, in this order; anything else goes last.
HELP_GROUPS = {
    "Input": ("lists", "scheme", "ports", "shard"),
    "Request": (
        "method", "headers", "user_agent", "http10", "insecure", "cacert", "timeout",
        "connect_timeout", "follow_redirects", "max_redirects", "retries", "backend", "http2",
        "resolvers",
    ),
    "Concurrency": ("concurrency", "per_host", "rate", "order", "loop", "workers", "cluster"),
    "Output": (
        "output_format", "json_output", "fields", "output", "append", "resume", "match_status",
        "filter_status",
        "quiet", "stats",
    ),
}  # fmt: skip


class Command(click.Command):
    """A click command whose expected errors end in one line on stderr and exit 2, whose
    options are grouped in --help, and whose every configurable option reads AFETCH_<NAME>
    (the long option name in capitals, '-' and '.' as '_')."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for key, param in config_options(self).items():
            param.envvar = env_name(key)

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        extra["standalone_mode"] = False
        try:
            return super().main(args, prog_name, **extra)
        except click.exceptions.Abort:
            sys.exit(ExitCode.INTERRUPTED)
        except click.BadParameter as exc:
            click.echo(f"afetch: error: {_where(exc)}{exc.format_message()}", err=True)
            sys.exit(ExitCode.USAGE)
        except click.ClickException as exc:
            click.echo(f"afetch: error: {exc.format_message()}", err=True)
            sys.exit(ExitCode.USAGE)
        except Exception as exc:  # a bug: one line for the user, the traceback on request
            if os.environ.get("AFETCH_DEBUG"):
                raise
            click.echo(f"afetch: internal error: {type(exc).__name__}: {exc}", err=True)
            sys.exit(ExitCode.INTERNAL)

    def invoke(self, ctx: click.Context) -> Any:
        _refuse_conflicts(ctx)
        return super().invoke(ctx)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Options in HELP_GROUPS sections, each one line: flags, help, default."""
        options = {p.name: p for p in self.get_params(ctx) if isinstance(p, click.Option)}
        placed = {name for names in HELP_GROUPS.values() for name in names}
        groups = {title: list(names) for title, names in HELP_GROUPS.items()}
        groups["Other"] = [name for name in options if name not in placed]
        for title, names in groups.items():
            rows = [_help_row(ctx, options[name]) for name in names if name in options]
            with formatter.section(f"{title} options"):
                formatter.write_dl(rows, col_max=32)


def _help_row(ctx: click.Context, option: click.Option) -> tuple[str, str]:
    """click's own row, without the range notes ("x>=0") and parentheses that crowd it."""
    record = option.get_help_record(ctx)
    assert record is not None  # no hidden options here
    default = option.get_help_extra(ctx).get("default")
    if isinstance(option.show_default, str):
        default = option.show_default
    help_text = option.help or ""
    return record[0], f"{help_text}  [default: {default}]" if default else help_text


def env_name(key: str) -> str:
    """The environment variable for a long option name: user-agent -> AFETCH_USER_AGENT."""
    return f"{ENV_PREFIX}_{key.upper().replace('-', '_').replace('.', '_')}"


def _where(exc: click.BadParameter) -> str:
    """Name where a bad value came from when it was not the command line."""
    param, ctx = exc.param, exc.ctx
    if param is None or ctx is None or param.name is None:
        return ""
    source = ctx.get_parameter_source(param.name)
    key = next((k for k, p in config_options(ctx.command).items() if p is param), None)
    if key is None:
        return ""
    if source is ParameterSource.ENVIRONMENT:
        return f"{env_name(key)}: "
    if source is ParameterSource.DEFAULT_MAP:
        return f"{ctx.meta.get(CONFIG_PATH, 'config file')}: key {key!r}: "
    return ""


CONFIG_PATH = "afetch.config_path"


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "afetch" / "config.toml"


def _load_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Eager: read option defaults from --config FILE, else the user's config file if any."""
    path = Path(value) if value else user_config_path()
    if value or path.is_file():
        try:
            defaults = load_toml_defaults(path, config_schema(ctx.command))
        except ConfigError as exc:
            raise click.UsageError(str(exc), ctx) from None
        ctx.default_map = {**(ctx.default_map or {}), **defaults}
        ctx.meta[CONFIG_PATH] = str(path)
    return value


def config_options(command: click.Command) -> dict[str, click.Option]:
    """Long option name -> option, for every option a config file or variable may set."""
    options = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.name and param.name not in _NOT_CONFIG:
            for opt in param.opts:
                if opt.startswith("--"):
                    options[opt[2:]] = param
    return options


def config_keys(command: click.Command) -> dict[str, str]:
    """Long option name -> parameter name, for every option a config file may set."""
    return {key: param.name for key, param in config_options(command).items() if param.name}


def config_schema(command: click.Command) -> dict[str, ConfigKey]:
    """Long option name -> the parameter it sets and the TOML type of its value, read from the
    option's own declaration: a flag is a boolean, an IntRange an integer, a FloatRange a
    number (integer or float), anything else a string; a repeatable option takes a list."""
    return {
        key: ConfigKey(param.name, _toml_type(param), repeated=param.multiple)
        for key, param in config_options(command).items()
        if param.name
    }


def _toml_type(option: click.Option) -> TomlType:
    if option.is_flag or isinstance(option.type, click.types.BoolParamType):
        return "boolean"
    if isinstance(option.type, click.types.IntParamType):
        return "integer"
    if isinstance(option.type, click.types.FloatParamType):
        return "number"
    return "string"


class HeaderType(click.ParamType):  # type: ignore[type-arg]
    """'Name: value' -> (name, value). In AFETCH_HEADER, one header per line."""

    name = "'NAME: VALUE'"
    envvar_list_splitter = "\n"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        text = str(value)
        name, colon, content = text.partition(":")
        if not colon or not name.strip() or name != name.strip():
            self.fail(f"expected 'Name: value', got {text!r}", param, ctx)
        return (name, content.strip())


def _parsed(parse: Callable[[str], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback running one of config.py's parsers; its ConfigError names the option."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            return parse(str(value))
        except ConfigError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None

    return callback


def _ports(ctx: click.Context, param: click.Parameter, value: Any) -> tuple[int, ...]:
    """--ports: a list that names no port (`-p ''`, often an unset shell variable) is refused
    where it was typed; in a config file `ports = ""` is the built-in default, written out."""
    ports: tuple[int, ...] = _parsed(parse_ports)(ctx, param, value)
    source = ctx.get_parameter_source("ports")
    if not ports and source is ParameterSource.COMMANDLINE:
        raise click.UsageError("--ports: empty port list", ctx)
    if not ports and source is ParameterSource.ENVIRONMENT:
        raise click.UsageError(f"{env_name('ports')}: empty port list", ctx)
    return ports


def _refuse_conflicts(ctx: click.Context) -> None:
    """Options given together on the command line that cannot both be obeyed."""
    output_format = ctx.params["output_format"]
    format_given = ctx.get_parameter_source("output_format") is ParameterSource.COMMANDLINE
    if ctx.params["json_output"] and format_given and output_format != "jsonl":
        raise click.UsageError(f"--json conflicts with --format {output_format}", ctx)


def _names(text: str) -> tuple[str, ...]:
    names = (name.strip() for name in text.split(","))
    return tuple(dict.fromkeys(name for name in names if name))


option = functools.partial(click.option, show_default=True)


@click.command(
    cls=Command,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Exit status: 0 all answered, 1 some failed, 2 usage error, 70 internal error,"
    " 74 cannot write output, 130 Ctrl-C, 143 SIGTERM."
    ' Shell completion: eval "$(_AFETCH_COMPLETE=bash_source afetch)" (or zsh_source,'
    " fish_source).",
)
@click.argument("targets", nargs=-1, metavar="[TARGET]...")
@click.option(
    "-l",
    "--list",
    "lists",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    help="Read targets from FILE (repeatable; - is stdin).",
)
@option(
    "--scheme",
    type=click.Choice(SCHEMES),
    default="http",
    help="Scheme for bare targets (auto: https, then http).",
)
@option(
    "-p",
    "--ports",
    default="",
    show_default="none",
    callback=_ports,
    metavar="PORTS",
    help="Ports for bare hosts, e.g. 80,443,8080-8090.",
)
@option(
    "-X",
    "--method",
    type=click.Choice(METHODS, case_sensitive=False),
    default="GET",
    metavar="GET|HEAD",
    help="Request method.",
)
@option(
    "-H",
    "--header",
    "headers",
    multiple=True,
    type=HeaderType(),
    show_default="none",
    help="Extra request header (repeatable).",
)
@option("-A", "--user-agent", default=DEFAULT_USER_AGENT, help="User-Agent header.")
@option("--http1.0", "http10", is_flag=True, help="Send HTTP/1.0 requests instead of HTTP/1.1.")
@option("-k", "--insecure", is_flag=True, help="Do not verify TLS certificates.")
@option(
    "--cacert",
    type=click.Path(exists=True, dir_okay=False),
    show_default="none",
    help="Also trust the CA certificates in this PEM FILE.",
)
@option(
    "-t",
    "--timeout",
    type=POSITIVE,
    default=DEFAULT_TIMEOUT,
    metavar="SECONDS",
    help="Seconds per request, whatever the server does.",
)
@option(
    "--connect-timeout",
    type=POSITIVE,
    default=DEFAULT_CONNECT_TIMEOUT,
    metavar="SECONDS",
    help="Seconds for the TCP connect plus TLS handshake.",
)
@option("-L", "--follow-redirects", is_flag=True, help="Follow redirects (http and https only).")
@option(
    "--max-redirects",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_REDIRECTS,
    metavar="N",
    help="With -L: more redirects than this is an error.",
)
@option(
    "--retries",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Retries after a connection error or timeout.",
)
@option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="raw",
    help="raw: asyncio transports; httpx: httpx.AsyncClient.",
)
@option(
    "--http2",
    is_flag=True,
    help="Offer HTTP/2 over TLS (needs --backend httpx).",
)
@option(
    "--resolver",
    "resolvers",
    multiple=True,
    metavar="IP[:PORT]",
    help="DNS server to ask instead of the system's (repeatable).",
)
@option(
    "--loop",
    type=click.Choice(LOOPS),
    default="auto",
    help="Event loop (auto: uvloop if installed).",
)
@option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=DEFAULT_CONCURRENCY,
    metavar="N",
    help="Targets in flight at once.",
)
@option(
    "--per-host",
    type=click.IntRange(min=0),
    default=0,
    show_default="0: no cap",
    metavar="N",
    help="Requests in flight at once to one host:port.",
)
@option(
    "--rate",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default="0: no cap",
    metavar="R",
    help="New requests per second, over the whole run.",
)
@option(
    "--order",
    type=click.Choice(ORDERS),
    default="completion",
    help="Order results by completion or by input.",
)
@option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="text",
    help="Output format.",
)
@click.option("--json", "json_output", is_flag=True, help="Same as --format jsonl.")
@option(
    "--fields",
    default="",
    show_default="all",
    callback=_parsed(_names),
    metavar="NAMES",
    help="Comma-separated fields to write (jsonl, csv).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write every record to FILE, as JSON Lines.",
)
@click.option(
    "--append",
    is_flag=True,
    help="With -o FILE: append to it instead of starting afresh.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="With -o FILE: skip the targets it has records for, append.",
)
@option(
    "--match-status",
    default="",
    show_default="any",
    callback=_parsed(StatusSet.parse),
    metavar="CODES",
    help="Write only responses with these statuses (200,3xx).",
)
@option(
    "--filter-status",
    default="",
    show_default="none",
    callback=_parsed(StatusSet.parse),
    metavar="CODES",
    help="Hide responses with these statuses, e.g. 404,5xx.",
)
@option(
    "--workers",
    default="",
    show_default="none",
    callback=_parsed(lambda text: parse_workers(text) if text else 0),
    metavar="N|auto",
    help="Fetch in N processes (auto: per CPU).",
)
@option(
    "--cluster",
    show_default="none",
    metavar="ADDRESS",
    help="Fetch on Dask: tcp://HOST:8786, local:N.",
)
@option(
    "--shard",
    default="",
    show_default="all",
    callback=_parsed(parse_shard),
    metavar="K/N",
    help="Fetch share K of N of the hosts only.",
)
@option("-q", "--quiet", is_flag=True, help="No progress line on the terminal.")
@option("--stats", is_flag=True, help="Print a summary on stderr at the end.")
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    envvar=f"{ENV_PREFIX}_CONFIG",
    show_default="~/.config/afetch/config.toml",
    help="Option defaults from this TOML file.",
)
@click.version_option(__version__, "-V", "--version", prog_name="afetch")
def afetch(
    targets: tuple[str, ...],
    lists: tuple[str, ...],
    scheme: str,
    ports: tuple[int, ...],
    method: str,
    headers: tuple[tuple[str, str], ...],
    user_agent: str,
    http10: bool,
    insecure: bool,
    cacert: str | None,
    timeout: float,
    connect_timeout: float,
    follow_redirects: bool,
    max_redirects: int,
    retries: int,
    backend: str,
    http2: bool,
    resolvers: tuple[str, ...],
    concurrency: int,
    per_host: int,
    rate: float,
    order: str,
    loop: str,
    output_format: str,
    json_output: bool,
    fields: tuple[str, ...],
    output: str | None,
    append: bool,
    resume: bool,
    match_status: StatusSet,
    filter_status: StatusSet,
    workers: int,
    cluster: str | None,
    shard: tuple[int, int] | None,
    quiet: bool,
    stats: bool,
) -> None:
    """Fetch the HTTP response headers of every TARGET.

    A target is host, host:port, [IPv6]:port or an http(s) URL. Targets come from the
    arguments, from -l FILE, and from stdin when no target is given and stdin is not a terminal.
    """
    # Heavy imports wait until a run really starts: --help and --version stay fast.
    from . import resume as resuming
    from . import runner
    from .inputs import STDIN, count_targets, read_lines
    from .jobs import Jobs
    from .output import STDOUT, Console, RecordWriter, format_jsonl, make_format
    from .resolve import require_async_dns

    for flag, wanted in (("--resume", resume), ("--append", append)):
        if wanted and (not output or output == STDOUT):
            raise click.UsageError(f"{flag} needs -o FILE: the file it continues")
    concurrency, warning = runner.fit_concurrency(concurrency)
    if warning:
        click.echo(f"afetch: warning: {warning}", err=True)
    try:
        config = Config(
            timeouts=Timeouts(total=timeout, connect=connect_timeout),
            limits=Limits(concurrency=concurrency, per_host=per_host, rate=rate, retries=retries),
            request=Request(
                method=method.upper(),
                user_agent=user_agent,
                headers=headers,
                verify=not insecure,
                cafile=cacert,
                http_version="1.0" if http10 else "1.1",
                follow_redirects=follow_redirects,
                max_redirects=max_redirects,
                http2=http2,
            ),
            output=Output(
                format="jsonl" if json_output else output_format,
                fields=fields,
                match_status=match_status,
                filter_status=filter_status,
                progress=not quiet,
                stats=stats,
            ),
            backend=backend,
            order=order,
            scheme=scheme,
            ports=ports,
            resolvers=resolvers,
        )
        fanout = Fanout(workers=workers, cluster=cluster, shard=shard)
        fanout.check(config)
        require_async_dns(config.resolvers)
        factory = runner.loop_factory(loop)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None

    console = Console.detect()
    if not targets and not lists:
        if sys.stdin is None or console.stdin_tty:
            raise click.UsageError("no targets: give them as arguments, with -l FILE, or on stdin")
        lists = (STDIN,)

    if output == STDOUT:  # the JSON Lines records on stdout: what --json writes there already
        if config.output.format != "jsonl":
            raise click.UsageError(
                f"-o - writes JSON Lines to stdout, which shows --format {config.output.format}:"
                " use --json, or -o FILE"
            )
        output = None
    if output and os.path.exists(output):
        for path in lists:
            if path != STDIN and os.path.samefile(path, output):
                raise click.UsageError(f"-o {output} is also read with -l: use another file")
    chosen = make_format(config.output)
    lines: Any = read_lines(targets, lists)
    expand = Jobs(config).count
    if shard is not None:
        from .scale import in_shard, shard_lines

        lines = shard_lines(lines, shard, config.scheme)
        counted = expand

        def expand(line: str) -> int:
            return counted(line) if in_shard(line, shard, config.scheme) else 0

    recorded = None
    try:
        if output and (append or resume):
            resuming.repair(output)  # a torn line left by a killed run
            if resume:
                recorded = resuming.Recorded.load(output, by_port=bool(config.ports))
        writer = RecordWriter(
            chosen.formatter,
            stdout=sys.stdout.buffer,
            file_path=output,
            file_formatter=format_jsonl,  # what --resume reads, whatever stdout shows
            line_buffered=console.stdout_tty,
            header=chosen.header,
            append=append or resume,  # else a new run starts a new file, as curl -o does
        )
    except OSError as exc:
        raise click.UsageError(f"cannot use {output}: {exc.strerror}") from None
    count = functools.partial(count_targets, targets, lists, expand)
    pool = None
    if fanout.parallel:  # last: a cluster started here is closed by the run, however it ends
        from .scale import open_pool

        try:
            pool = open_pool(fanout, loop)
        except ConfigError as exc:
            writer.close()
            raise click.UsageError(str(exc)) from None
    outcome = runner.run(
        config, lines, writer, factory, console=console, count=count, recorded=recorded, pool=pool
    )
    sys.exit(runner.exit_code(outcome))


def main() -> None:
    """The command, without the process around it (fetcher.process.main, the console script,
    handles signals first)."""
    afetch(prog_name="afetch")
