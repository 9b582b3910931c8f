"""The afetch command: options -> Config -> runner.run -> exit code. No I/O logic lives here."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from . import __version__
from .config import (
    BACKENDS,
    DEFAULT_CONCURRENCY,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    DEFAULT_USER_AGENT,
    LOOPS,
    METHODS,
    ORDERS,
    SCHEMES,
    Config,
    ConfigError,
    Limits,
    Request,
    Timeouts,
    load_toml_defaults,
)
from .runner import ExitCode

ENV_PREFIX = "AFETCH"
POSITIVE = click.FloatRange(min=0, min_open=True)
# Options that make no sense as configured defaults.
_NOT_CONFIG = {"config", "version", "help", "lists", "json_output", "output", "resume"}


class Command(click.Command):
    """A click command whose expected errors end in one line on stderr and exit 2."""

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        extra.setdefault("auto_envvar_prefix", ENV_PREFIX)
        extra["standalone_mode"] = False
        try:
            return super().main(args, prog_name, **extra)
        except click.exceptions.Abort:
            sys.exit(ExitCode.INTERRUPTED)
        except click.ClickException as exc:
            click.echo(f"afetch: error: {exc.format_message()}", err=True)
            sys.exit(ExitCode.USAGE)
        except Exception as exc:  # a bug: one line for the user, the traceback on request
            if os.environ.get("AFETCH_DEBUG"):
                raise
            click.echo(f"afetch: internal error: {type(exc).__name__}: {exc}", err=True)
            sys.exit(ExitCode.INTERNAL)


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "afetch" / "config.toml"


def _load_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Eager: read option defaults from --config FILE, else the user's config file if any."""
    path = Path(value) if value else user_config_path()
    if value or path.is_file():
        try:
            defaults = load_toml_defaults(path, config_keys(ctx.command))
        except ConfigError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
        ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def config_keys(command: click.Command) -> dict[str, str]:
    """Long option name -> parameter name, for every option a config file may set."""
    keys = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.name and param.name not in _NOT_CONFIG:
            for opt in param.opts:
                if opt.startswith("--"):
                    keys[opt[2:]] = param.name
    return keys


def _parse_header(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> Any:
    headers = []
    for value in values:
        name, colon, content = value.partition(":")
        if not colon or not name.strip() or name != name.strip():
            raise click.BadParameter(f"expected 'Name: value', got {value!r}", ctx, param)
        headers.append((name, content.strip()))
    return tuple(headers)


@click.command(
    cls=Command,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Exit status: 0 all answered, 1 some failed, 2 usage error, 130 Ctrl-C, 143 SIGTERM.",
)
@click.argument("targets", nargs=-1, metavar="[TARGET]...")
@click.option(
    "-l",
    "--list",
    "lists",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    help="Read targets from FILE, one per line ('-' is stdin). Repeatable.",
)
@click.option(
    "--scheme",
    type=click.Choice(SCHEMES),
    default="http",
    show_default=True,
    help="Scheme for targets given without one.",
)
@click.option(
    "-X",
    "--method",
    type=click.Choice(METHODS, case_sensitive=False),
    default="GET",
    show_default=True,
    help="Request method.",
)
@click.option(
    "-H",
    "--header",
    "headers",
    multiple=True,
    callback=_parse_header,
    help="Extra request header 'Name: value'. Repeatable.",
)
@click.option(
    "-A", "--user-agent", default=DEFAULT_USER_AGENT, show_default=True, help="User-Agent header."
)
@click.option("-k", "--insecure", is_flag=True, help="Do not verify TLS certificates.")
@click.option(
    "--cacert",
    type=click.Path(exists=True, dir_okay=False),
    help="Also trust the CA certificates in this PEM file.",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    help="Fetches in flight at once.",
)
@click.option(
    "-t",
    "--timeout",
    type=POSITIVE,
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Total seconds per target, whatever the server does.",
)
@click.option(
    "--connect-timeout",
    type=POSITIVE,
    default=DEFAULT_CONNECT_TIMEOUT,
    show_default=True,
    help="Seconds for the TCP connect plus TLS handshake.",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="raw",
    show_default=True,
    help="raw: asyncio streams; httpx: httpx.AsyncClient.",
)
@click.option(
    "--http2",
    is_flag=True,
    help="Offer HTTP/2 over TLS (ALPN). Needs --backend httpx and afetch[http2].",
)
@click.option(
    "--loop",
    type=click.Choice(LOOPS),
    default="auto",
    show_default=True,
    help="Event loop: uvloop when installed (auto), or asyncio's own.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "jsonl"]),
    default="text",
    show_default=True,
    help="Output format.",
)
@click.option("--json", "json_output", is_flag=True, help="Same as --format jsonl.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    help="Also append the records to FILE, as JSON Lines (whole lines only).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="With -o FILE: skip the targets FILE already has records for.",
)
@click.option(
    "--order",
    type=click.Choice(ORDERS),
    default="completion",
    show_default=True,
    help="Write results as they complete, or in input order.",
)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    help="Read option defaults from this TOML file.",
)
@click.version_option(__version__, "-V", "--version", prog_name="afetch")
def afetch(
    targets: tuple[str, ...],
    lists: tuple[str, ...],
    scheme: str,
    method: str,
    headers: tuple[tuple[str, str], ...],
    user_agent: str,
    insecure: bool,
    cacert: str | None,
    concurrency: int,
    timeout: float,
    connect_timeout: float,
    backend: str,
    http2: bool,
    loop: str,
    output_format: str,
    json_output: bool,
    output: str | None,
    resume: bool,
    order: str,
) -> None:
    """Fetch the HTTP response headers of every TARGET.

    A target is host, host:port, [IPv6]:port or an http(s) URL. Targets come from the
    arguments, from -l FILE, and from stdin when no target is given and stdin is not a terminal.
    """
    # Heavy imports wait until a run really starts: --help and --version stay fast.
    from . import resume as resuming
    from . import runner
    from .inputs import STDIN, read_lines
    from .output import FORMATS, Console, RecordWriter

    if resume and not output:
        raise click.UsageError("--resume needs -o FILE: the file it resumes")
    concurrency, warning = runner.fit_concurrency(concurrency)
    if warning:
        click.echo(f"afetch: warning: {warning}", err=True)
    try:
        config = Config(
            timeouts=Timeouts(total=timeout, connect=connect_timeout),
            limits=Limits(concurrency=concurrency),
            request=Request(
                method=method.upper(),
                user_agent=user_agent,
                headers=headers,
                verify=not insecure,
                cafile=cacert,
                http2=http2,
            ),
            backend=backend,
            order=order,
            scheme=scheme,
        )
        factory = runner.loop_factory(loop)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None

    console = Console.detect()
    if not targets and not lists:
        if sys.stdin is None or console.stdin_tty:
            raise click.UsageError("no targets: give them as arguments, with -l FILE, or on stdin")
        lists = (STDIN,)

    lines = read_lines(targets, lists)
    try:
        if output:
            resuming.repair(output)  # a torn line left by a killed run
            if resume:
                lines = resuming.skip_recorded(lines, resuming.recorded_inputs(output))
        writer = RecordWriter(
            FORMATS["jsonl" if json_output else output_format],
            stdout=sys.stdout.buffer,
            file_path=output,
            file_formatter=FORMATS["jsonl"],
            line_buffered=console.stdout_tty,
        )
    except OSError as exc:
        raise click.UsageError(f"cannot use {output}: {exc.strerror}") from None
    outcome = runner.run(config, lines, writer, factory)
    sys.exit(runner.exit_code(outcome))


def main() -> None:
    """Console-script entry point."""
    afetch(prog_name="afetch")
