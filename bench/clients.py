"""The clients under test: how to run each one on a workload, and how to check what it did.

Every client gets the same URLs, the same concurrency and a new TCP connection per URL. Each one
reports correctness in its own way (JSON lines, curl's write-out, ab's summary, a baseline's JSON
summary); ``Tally`` is the common shape: how many records came back, how many were a 200.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
# Lines handed to a child's stdin per write: few syscalls, little memory.
STDIN_CHUNK_LINES = 1000


@dataclass(frozen=True)
class Workload:
    """N URLs over several loopback hosts, fetched with ``concurrency`` in flight."""

    urls: tuple[str, ...]
    concurrency: int
    timeout_s: float
    workdir: Path

    @property
    def size(self) -> int:
        return len(self.urls)

    def urls_file(self) -> Path:
        path = self.workdir / "urls.txt"
        if not path.exists():
            path.write_text("".join(f"{url}\n" for url in self.urls))
        return path

    def curl_config(self) -> Path:
        path = self.workdir / "curl.cfg"
        if not path.exists():
            # output is per URL in curl; without it every body lands on stdout.
            path.write_text("".join(f'url = "{url}"\noutput = "/dev/null"\n' for url in self.urls))
        return path

    def stdin_chunks(self) -> Iterator[bytes]:
        return chunked_lines(self.urls)


def make_urls(hosts: Iterable[str], port: int, count: int, scheme: str = "http") -> tuple[str, ...]:
    """``count`` URLs spread round-robin over ``hosts``."""
    host_list = list(hosts)
    return tuple(f"{scheme}://{host_list[i % len(host_list)]}:{port}/" for i in range(count))


def stream_urls(hosts: Iterable[str], port: int, count: int) -> Iterator[str]:
    """Like ``make_urls`` but lazy: the memory case never holds a million lines."""
    host_list = list(hosts)
    for i in range(count):
        yield f"http://{host_list[i % len(host_list)]}:{port}/"


def chunked_lines(lines: Iterable[str]) -> Iterator[bytes]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= STDIN_CHUNK_LINES:
            yield ("\n".join(chunk) + "\n").encode()
            chunk.clear()
    if chunk:
        yield ("\n".join(chunk) + "\n").encode()


@dataclass(frozen=True)
class Tally:
    """What a client's own output says it did."""

    records: int
    ok: int
    note: str = ""


@dataclass(frozen=True)
class Client:
    """One way of fetching a workload: a command line, its stdin, and how to read its output."""

    name: str
    argv: tuple[str, ...]
    tally: Callable[[Path], Tally]
    stdin: Callable[[], Iterable[bytes]] | None = None


def _afetch_tally(stdout: Path) -> Tally:
    records = ok = torn = 0
    with stdout.open("rb") as lines:
        for line in lines:
            records += 1
            try:
                record = json.loads(line)
            except ValueError:
                torn += 1
                continue
            if isinstance(record, dict) and record.get("failed") is False:
                ok += 1
    return Tally(records, ok, f"{torn} unparsable lines" if torn else "")


def afetch(
    command: str, backend: str, work: Workload, extra: tuple[str, ...] = (), label: str = ""
) -> Client:
    """afetch on the workload; `extra` options after the common ones, `label` after its name."""
    argv = (
        *shlex.split(command),
        "--backend",
        backend,
        "-c",
        str(work.concurrency),
        "-t",
        f"{work.timeout_s:g}",
        "--json",
        *extra,
    )
    name = f"afetch {backend}{' ' + label if label else ''}"
    return Client(name, argv, _afetch_tally, work.stdin_chunks)


def _curl_tally(stdout: Path) -> Tally:
    records = ok = reconnects = 0
    for line in stdout.read_text(errors="replace").splitlines():
        records += 1
        connects, _, status = line.partition(" ")
        if connects != "1":
            reconnects += 1
        elif status == "200":
            ok += 1
    return Tally(
        records, ok, f"{reconnects} transfers without exactly 1 connect" if reconnects else ""
    )


def curl(work: Workload, cafile: str | None = None) -> Client:
    argv = (
        *(("--cacert", cafile) if cafile else ()),
        "--parallel",
        "--parallel-max",
        str(work.concurrency),
        "--http1.0",
        "-s",
        "-w",
        "%{num_connects} %{http_code}\\n",
        "-K",
        str(work.curl_config()),
    )
    return Client("curl --parallel", ("curl", *argv), _curl_tally)


_AB_FIELD = re.compile(r"^(Complete requests|Failed requests|Non-2xx responses):\s+(\d+)", re.M)


def _ab_tally(stdout: Path) -> Tally:
    fields = {name: int(value) for name, value in _AB_FIELD.findall(stdout.read_text())}
    complete = fields.get("Complete requests", 0)
    failed = fields.get("Failed requests", 0) + fields.get("Non-2xx responses", 0)
    return Tally(complete, complete - failed)


def ab(work: Workload) -> Client:
    # ab takes one URL; it gets the first host. No -k: a new connection per request.
    argv = ("ab", "-q", "-n", str(work.size), "-c", str(work.concurrency), work.urls[0])
    return Client("ab", argv, _ab_tally)


def _httprobe_https_tally(stdout: Path) -> Tally:
    lines = [line for line in stdout.read_text(errors="replace").splitlines() if line.strip()]
    return Tally(len(lines), len(lines))  # it prints only the URLs that answered


def httprobe_https(work: Workload, binary: Path | None = None) -> Client | None:
    """tomnomnom's httprobe (build_httprobe finds or builds it), a Go tool:
    host:port lines on stdin, https only (-s -p https:PORT), -c workers."""
    program = str(binary) if binary is not None else shutil.which("httprobe")
    if program is None:
        return None
    port = work.urls[0].rsplit(":", 1)[1].strip("/")
    hosts = [url.split("//", 1)[1].rsplit(":", 1)[0] for url in work.urls]
    argv = (program, "-s", "-p", f"https:{port}", "-c", str(work.concurrency))
    return Client("httprobe", argv, _httprobe_https_tally, lambda: chunked_lines(hosts))


def _summary_tally(stdout: Path) -> Tally:
    try:
        summary = json.loads(stdout.read_text())
        return Tally(int(summary["records"]), int(summary["ok"]))
    except (ValueError, KeyError, TypeError):
        return Tally(0, 0, "no summary printed")


def httpx_baseline(work: Workload) -> Client:
    argv = (
        sys.executable,
        str(BENCH_DIR / "baseline_httpx.py"),
        str(work.urls_file()),
        "-c",
        str(work.concurrency),
        "-t",
        f"{work.timeout_s:g}",
    )
    return Client("httpx.AsyncClient loop", argv, _summary_tally)


def streams_baseline(work: Workload, loop: str) -> Client:
    argv = (
        sys.executable,
        str(BENCH_DIR / "baseline_streams.py"),
        str(work.urls_file()),
        "-c",
        str(work.concurrency),
        "-t",
        f"{work.timeout_s:g}",
        "--loop",
        loop,
    )
    return Client(f"asyncio streams ({loop})", argv, _summary_tally)


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def afetch_with(command: str, name: str, work: Workload, *extra: str) -> Client:
    """afetch raw with extra options (--workers N, --cluster local:N), targets on stdin."""
    argv = (*afetch(command, "raw", work).argv, *extra)
    return Client(name, argv, _afetch_tally, work.stdin_chunks)


def _httprobe_tally(stdout: Path) -> Tally:
    # httprobe prints the URL of each probe that answered, and nothing for the others.
    lines = stdout.read_text(errors="replace").splitlines()
    answered = sum(1 for line in lines if line.startswith("http://"))
    return Tally(len(lines), answered)


def httprobe(binary: Path, work: Workload) -> Client:
    """tomnomnom's httprobe (Go): hosts on stdin, one plain-HTTP probe each on the workload's
    port (-s drops its default :80 and :443 probes). Its -c is split between an HTTPS and an
    HTTP pool, and only the HTTP one works here: twice the concurrency gives it as many."""
    hosts = [url.split("//", 1)[1].split(":", 1)[0] for url in work.urls]
    port = work.urls[0].rsplit(":", 1)[1].rstrip("/")
    timeout_ms = str(int(work.timeout_s * 1000))
    argv = (
        str(binary),
        "-s",
        "-p",
        f"http:{port}",
        "-c",
        str(2 * work.concurrency),
        "-t",
        timeout_ms,
    )
    return Client("httprobe (Go)", argv, _httprobe_tally, lambda: chunked_lines(hosts))
