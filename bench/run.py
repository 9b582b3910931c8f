"""afetch's reproducible benchmark: throughput, latency-bound, memory and start-up cases.

    python bench/run.py [--quick] [--json-out PATH] [--afetch CMD]

Starts its own nginx (and, for the latency case, a delayed server) on 127.0.0.x, runs every
client as a child process one at a time, prints Markdown tables and writes everything to a JSON
file. See bench/README.md for what each case measures and how to read the tables.
"""

from __future__ import annotations

import argparse
import atexit
import compileall
import dataclasses
import datetime
import importlib.util
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import clients
import report
import servers
from clients import Client, Workload
from measure import raise_nofile_limit, rss_floor_kib, run_child
from report import Check, Measurement, Summary

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_JSON_OUT = BENCH_DIR / "results" / "latest.json"
CASES = ("throughput", "https", "latency", "memory", "startup", "scaling")

# The targets, checked at the end of every run.
RAW_VS_CURL = 1.0
RAW_VS_AB = 0.6
HTTPX_VS_BASELINE = 3.0
LATENCY_VS_AB = 1.1
MEMORY_MAX_MB = 80.0
MEMORY_GROWTH = 1.10
STARTUP_MAX_MS = 150.0
# Issue 12: raw https against curl, and the `tls` object's cost (with vs --no-tls-info).
HTTPS_RAW_VS_CURL = 0.95
TLS_INFO_COST = 0.95
VERSION_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 10.0
# Issue 11's targets: --workers 2 against the other clients and one process, Dask against it,
# and the memory of every process of a --workers 2 run together.
WORKERS_VS_CURL = 1.0
WORKERS_VS_HTTPROBE = 1.0
WORKERS_CPU_PER_REQUEST = 1.10
DASK_VS_WORKERS = 0.8
SCALING_MEMORY_MAX_MB = 150.0


@dataclass(frozen=True)
class Plan:
    """The sizes of every case; ``--quick`` shrinks them to a run of under a minute."""

    rounds: int
    throughput_targets: int
    throughput_concurrency: int
    latency_targets: int
    latency_concurrency: int
    latency_delay_s: float
    memory_large: int
    memory_small: int
    memory_concurrency: int
    startup_runs: int
    child_timeout_s: float
    afetch_timeout_s: float = 10.0
    # A TLS handshake costs both sides far more than a request: fewer targets than throughput.
    https_targets: int = 5_000
    # The scaling case: larger than throughput's, so a pool's start-up (about 0.3 s a worker
    # process, 1-2 s a Dask cluster) is a part of the run, not most of it.
    scaling_targets: int = 40_000

    @classmethod
    def full(cls, child_timeout_s: float) -> Plan:
        return cls(5, 20_000, 200, 5_000, 1_000, 0.2, 1_000_000, 100_000, 500, 20, child_timeout_s)

    @classmethod
    def quick(cls, child_timeout_s: float) -> Plan:
        return cls(
            2,
            2_000,
            200,
            1_000,
            500,
            0.2,
            100_000,
            10_000,
            500,
            20,
            child_timeout_s,
            10.0,
            1_000,
            10_000,
        )

    def memory_timeout_s(self, targets: int) -> float:
        # A million targets at a slow 2 000/s is over eight minutes; the hard limit scales.
        return self.child_timeout_s + targets / 2_000


class Bench:
    """One benchmark run: the scratch directory, the servers, and what has been measured."""

    def __init__(self, plan: Plan, afetch_command: str, tmp: Path) -> None:
        self.plan = plan
        self.afetch_command = afetch_command
        self.tmp = tmp
        self.results: dict[str, object] = {}
        self.checks: list[Check] = []
        self._run_counter = 0
        self.rss_floor_mb = rss_floor_kib(self.scratch("rss-floor")) / 1024

    def scratch(self, name: str) -> Path:
        self._run_counter += 1
        path = self.tmp / f"{self._run_counter:04d}-{name}"
        path.mkdir()
        return path

    def measure(self, client: Client, expected: int, timeout_s: float) -> Measurement:
        workdir = self.scratch(client.name.replace(" ", "_").replace("/", "_"))
        stdout = workdir / "stdout"
        child = run_child(
            client.argv,
            timeout_s=timeout_s,
            stdin=client.stdin() if client.stdin is not None else None,
            stdout=stdout,
            workdir=workdir,
        )
        tally = client.tally(stdout)
        shutil.rmtree(workdir, ignore_errors=True)
        return Measurement(client.name, expected, child, tally)

    def rounds(self, clients_: Sequence[Client], expected: int, label: str) -> list[Summary]:
        """Every client once per round; the starting client rotates so no one always goes first."""
        summaries = {client.name: Summary(client.name, expected) for client in clients_}
        for round_index in range(self.plan.rounds):
            start = round_index % len(clients_)
            for client in [*clients_[start:], *clients_[:start]]:
                measurement = self.measure(client, expected, self.plan.child_timeout_s)
                summaries[client.name].runs.append(measurement)
                status = "ok" if measurement.correct else measurement.problem()
                progress(
                    f"{label} round {round_index + 1}/{self.plan.rounds}: {client.name:<26} "
                    f"{measurement.child.wall_s:7.2f} s  {measurement.rate:9,.0f} req/s  "
                    f"{measurement.child.peak_rss_mb:5.0f} MB  {status}"
                )
        return [summaries[client.name] for client in clients_]

    # -- cases ---------------------------------------------------------------------------------

    def throughput(self, nginx: servers.Nginx) -> None:
        plan = self.plan
        work = Workload(
            clients.make_urls(nginx.hosts, nginx.port, plan.throughput_targets),
            plan.throughput_concurrency,
            plan.afetch_timeout_s,
            self.scratch("throughput"),
        )
        lineup = [
            clients.afetch(self.afetch_command, "raw", work),
            clients.afetch(self.afetch_command, "httpx", work),
            clients.curl(work),
            clients.ab(work),
            clients.httpx_baseline(work),
            clients.streams_baseline(work, "asyncio"),
        ]
        if clients.uvloop_available():
            lineup.append(clients.streams_baseline(work, "uvloop"))
        summaries = self.rounds(lineup, work.size, "throughput")
        title = (
            f"Throughput: {work.size:,} targets on {len(nginx.hosts)} hosts, "
            f"{work.concurrency} in flight, a new connection each, {plan.rounds} rounds"
        )
        emit(title, report.throughput_table(summaries, "curl --parallel", "ab", self.rss_floor_mb))
        by_name = {summary.client: summary for summary in summaries}

        def rate(name: str) -> float | None:
            return by_name[name].median_rate() if name in by_name else None

        raw = rate("afetch raw")
        self.checks += [
            report.ratio_check(
                "throughput raw vs curl",
                f">= {RAW_VS_CURL}x",
                report.ratio(raw, rate("curl --parallel")),
                RAW_VS_CURL,
            ),
            report.ratio_check(
                "throughput raw vs ab", f">= {RAW_VS_AB}x", report.ratio(raw, rate("ab")), RAW_VS_AB
            ),
            report.ratio_check(
                "throughput httpx vs httpx loop",
                f">= {HTTPX_VS_BASELINE}x",
                report.ratio(rate("afetch httpx"), rate("httpx.AsyncClient loop")),
                HTTPX_VS_BASELINE,
            ),
        ]
        self.results["throughput"] = {
            "targets": work.size,
            "hosts": list(nginx.hosts),
            "concurrency": work.concurrency,
            "rounds": plan.rounds,
            "clients": [summary.as_dict() for summary in summaries],
        }

    def https(self) -> None:
        """Throughput over TLS against nginx with an EC P-256 certificate from a test CA: afetch
        raw with and without the `tls` object, httpx, curl, ab (and httprobe if installed)."""
        plan = self.plan
        cert, key, ca_file = servers.tls_files(self.scratch("tls-files"), servers.DEFAULT_HOSTS)
        nginx = servers.Nginx(self.scratch("nginx-tls"), tls=(cert, key))
        atexit.register(nginx.stop)
        nginx.start()
        progress(f"nginx (TLS) on {', '.join(nginx.hosts)} port {nginx.port}")
        try:
            work = Workload(
                clients.make_urls(nginx.hosts, nginx.port, plan.https_targets, "https"),
                plan.throughput_concurrency,
                plan.afetch_timeout_s,
                self.scratch("https"),
            )
            cacert = ("--cacert", str(ca_file))
            command = self.afetch_command
            lineup = [
                clients.afetch(command, "raw", work, cacert),
                clients.afetch(command, "raw", work, (*cacert, "--no-tls-info"), "--no-tls-info"),
                clients.afetch(command, "httpx", work, cacert),
                clients.curl(work, str(ca_file)),
                clients.ab(work),  # verifies nothing
            ]
            httprobe = clients.httprobe_https(work, build_httprobe(self.tmp))
            if httprobe is not None:
                lineup.append(httprobe)
            else:
                progress("https: no httprobe (see above), left out")
            summaries = self.rounds(lineup, work.size, "https")
        finally:
            nginx.stop()
        title = (
            f"HTTPS throughput: {work.size:,} targets on {len(nginx.hosts)} hosts, "
            f"{work.concurrency} in flight, a full TLS handshake each, {plan.rounds} rounds"
        )
        emit(title, report.throughput_table(summaries, "curl --parallel", "ab", self.rss_floor_mb))
        by_name = {summary.client: summary.median_rate() for summary in summaries}
        cpu = {summary.client: summary.median_cpu_us() for summary in summaries}
        raw = by_name.get("afetch raw")
        self.checks += [
            report.ratio_check(
                "https raw vs curl",
                f">= {HTTPS_RAW_VS_CURL}x",
                report.ratio(raw, by_name.get("curl --parallel")),
                HTTPS_RAW_VS_CURL,
            ),
            report.ratio_check(
                "https raw with tls vs --no-tls-info",
                f">= {TLS_INFO_COST}x",
                report.ratio(raw, by_name.get("afetch raw --no-tls-info")),
                TLS_INFO_COST,
            ),
            # The same target in CPU per request, which a busy machine disturbs far less.
            report.ratio_check(
                "https raw CPU/request, --no-tls-info vs tls",
                f">= {TLS_INFO_COST}x",
                report.ratio(cpu.get("afetch raw --no-tls-info"), cpu.get("afetch raw")),
                TLS_INFO_COST,
            ),
        ]
        for name, micros in cpu.items():
            progress(f"https: {name:<26} {micros or 0:8.0f} us CPU per request (median)")
        self.results["https"] = {
            "targets": work.size,
            "hosts": list(nginx.hosts),
            "concurrency": work.concurrency,
            "rounds": plan.rounds,
            "clients": [summary.as_dict() for summary in summaries],
        }

    def latency(self) -> None:
        plan = self.plan
        delayed = servers.DelayedServer(
            self.tmp, delay_s=plan.latency_delay_s, processes=max(2, os.cpu_count() or 1)
        )
        delayed.start()
        try:
            work = Workload(
                clients.make_urls(delayed.hosts, delayed.port, plan.latency_targets),
                plan.latency_concurrency,
                plan.afetch_timeout_s,
                self.scratch("latency"),
            )
            lineup = [
                clients.afetch(self.afetch_command, "raw", work),
                clients.afetch(self.afetch_command, "httpx", work),
                clients.curl(work),
                clients.ab(work),
            ]
            summaries = self.rounds(lineup, work.size, "latency")
        finally:
            delayed.stop()
        ideal = work.size / work.concurrency * plan.latency_delay_s
        title = (
            f"Latency-bound: {work.size:,} targets answered after {plan.latency_delay_s * 1000:.0f}"
            f" ms, {work.concurrency} in flight, ideal {ideal:.2f} s, {plan.rounds} rounds"
        )
        table = report.latency_table(
            summaries, plan.latency_delay_s, work.concurrency, "ab", self.rss_floor_mb
        )
        ab_floor = (work.size / work.concurrency + 1) * plan.latency_delay_s
        emit(
            title,
            f"{table}\n\nab sends its first request alone and opens the other connections only "
            f"after that answer,\nso its own floor is (targets/concurrency + 1) x delay = "
            f"{ab_floor:.2f} s.",
        )
        by_name = {summary.client: summary for summary in summaries}
        raw_vs_ab = report.ratio(by_name["afetch raw"].median_wall(), by_name["ab"].median_wall())
        self.checks.append(
            Check(
                "latency raw vs ab (wall time)",
                f"<= {LATENCY_VS_AB}x",
                "—" if raw_vs_ab is None else f"{raw_vs_ab:.2f}x",
                None if raw_vs_ab is None else raw_vs_ab <= LATENCY_VS_AB,
            )
        )
        self.results["latency"] = {
            "targets": work.size,
            "concurrency": work.concurrency,
            "delay_s": plan.latency_delay_s,
            "ideal_s": ideal,
            "ab_floor_s": ab_floor,
            "rounds": plan.rounds,
            "clients": [summary.as_dict() for summary in summaries],
        }

    def memory(self, nginx: servers.Nginx) -> None:
        plan = self.plan
        argv = (
            *shlex.split(self.afetch_command),
            "-c",
            str(plan.memory_concurrency),
            "-t",
            f"{plan.afetch_timeout_s:g}",
            "--json",
        )
        runs: list[Measurement] = []
        for size in (plan.memory_small, plan.memory_large):

            def targets(size: int = size) -> Iterable[bytes]:
                return clients.chunked_lines(clients.stream_urls(nginx.hosts, nginx.port, size))

            workdir = self.scratch(f"memory-{size}")
            # stdout goes to /dev/null: a million JSON lines on disk is not what is measured.
            child = run_child(
                argv, timeout_s=plan.memory_timeout_s(size), stdin=targets(), workdir=workdir
            )
            shutil.rmtree(workdir, ignore_errors=True)
            # Records are not counted here (stdout is discarded): a clean exit is the check.
            tally = clients.Tally(size, size) if child.clean_exit else clients.Tally(0, 0)
            measurement = Measurement(f"afetch, {size:,} targets", size, child, tally)
            runs.append(measurement)
            status = "ok" if measurement.correct else measurement.problem()
            progress(
                f"memory: {size:>9,} targets {child.wall_s:7.1f} s  {measurement.rate:9,.0f} req/s"
                f"  {child.peak_rss_mb:5.1f} MB  {status}"
            )
        small, large = runs
        rows = [
            [
                run.client,
                f"{run.child.wall_s:.1f}",
                f"{run.rate:,.0f}",
                report.fmt_rss(run.child.peak_rss_mb, self.rss_floor_mb, digits=1),
                "exit 0" if run.correct else run.problem(),
            ]
            for run in runs
        ]
        emit(
            f"Memory: targets streamed on stdin, {plan.memory_concurrency} in flight, "
            "JSON to /dev/null",
            report.markdown(["run", "wall s", "req/s", "peak RSS MB", "exit"], rows),
        )
        growth = report.ratio(large.child.peak_rss_mb, small.child.peak_rss_mb)
        both_ok = small.correct and large.correct
        self.checks += [
            Check(
                f"memory peak at {large.expected:,}",
                f"<= {MEMORY_MAX_MB:.0f} MB",
                f"{large.child.peak_rss_mb:.1f} MB",
                large.correct and large.child.peak_rss_mb <= MEMORY_MAX_MB,
            ),
            Check(
                f"memory {large.expected:,} vs {small.expected:,}",
                f"<= {MEMORY_GROWTH:.2f}x",
                "—" if growth is None else f"{growth:.2f}x",
                None if growth is None or not both_ok else growth <= MEMORY_GROWTH,
            ),
        ]
        self.results["memory"] = {
            "concurrency": plan.memory_concurrency,
            "runs": [{"targets": run.expected, **run.as_dict()} for run in runs],
        }

    def scaling(self, nginx: servers.Nginx) -> None:
        """Issue 11: req/s and CPU per request for 1..CPUs worker processes, a 2-worker Dask
        local cluster and the other clients; then the memory of a --workers 2 run, every
        process of it summed, on a streamed input."""
        plan = self.plan
        work = Workload(
            clients.make_urls(nginx.hosts, nginx.port, plan.scaling_targets),
            plan.throughput_concurrency,
            plan.afetch_timeout_s,
            self.scratch("scaling"),
        )
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        command = self.afetch_command
        lineup = [clients.afetch_with(command, "afetch, 1 process", work)]
        lineup += [
            clients.afetch_with(command, f"afetch --workers {n}", work, "--workers", str(n))
            for n in range(1, max(2, cpus) + 1)
        ]
        if importlib.util.find_spec("distributed") is not None:
            lineup.append(
                clients.afetch_with(
                    command, "afetch --cluster local:2", work, "--cluster", "local:2"
                )
            )
        else:
            progress(
                "scaling: distributed is not installed (pip install 'afetch[dask]'): no Dask run"
            )
        lineup += [clients.curl(work), clients.ab(work)]
        probe = build_httprobe(self.tmp)
        if probe is not None:
            lineup.append(clients.httprobe(probe, work))
        summaries = self.rounds(lineup, work.size, "scaling")
        rows = []
        for summary in summaries:
            cpu = cpu_per_request_us(summary)
            rows.append(
                [
                    summary.client,
                    "—" if summary.median_rate() is None else f"{summary.median_rate():,.0f}",
                    "—" if cpu is None else f"{cpu:.0f}",
                    report.fmt_rss(summary.peak_rss_mb(), self.rss_floor_mb),
                    summary.correctness(),
                ]
            )
        emit(
            f"Scaling: {work.size:,} targets on {len(nginx.hosts)} hosts, {work.concurrency} in"
            f" flight in all, a new connection each, {plan.rounds} rounds, {cpus} CPUs",
            report.markdown(
                ["client", "median req/s", "CPU us/request", "peak RSS MB (one process)", "runs"],
                rows,
            )
            + "\n\nCPU is user + system time of the client and all its processes, over the"
            " requests made.",
        )
        by_name = {summary.client: summary for summary in summaries}

        def rate(name: str) -> float | None:
            return by_name[name].median_rate() if name in by_name else None

        def rounds(name: str, other: str) -> list[float]:
            if name not in by_name or other not in by_name:
                return []
            return report.paired_ratios(by_name[name], by_name[other])

        two = rate("afetch --workers 2")
        one_cpu = cpu_per_request_us(by_name["afetch, 1 process"])
        two_cpu = cpu_per_request_us(by_name["afetch --workers 2"])
        cpu_ratio = report.ratio(two_cpu, one_cpu)
        self.checks += [
            report.ratio_check(
                "--workers 2 vs curl",
                f">= {WORKERS_VS_CURL}x",
                report.ratio(two, rate("curl --parallel")),
                WORKERS_VS_CURL,
                rounds("afetch --workers 2", "curl --parallel"),
            ),
            report.ratio_check(
                "--workers 2 vs httprobe",
                f">= {WORKERS_VS_HTTPROBE}x",
                report.ratio(two, rate("httprobe (Go)")),
                WORKERS_VS_HTTPROBE,
                rounds("afetch --workers 2", "httprobe (Go)"),
            ),
            Check(
                "--workers 2 CPU/request vs 1 process",
                f"<= {WORKERS_CPU_PER_REQUEST:.2f}x",
                "—"
                if cpu_ratio is None
                else f"{cpu_ratio:.2f}x"
                + report.fmt_rounds(
                    report.paired_ratios(
                        by_name["afetch --workers 2"],
                        by_name["afetch, 1 process"],
                        report.cpu_per_request,
                    )
                ),
                None if cpu_ratio is None else cpu_ratio <= WORKERS_CPU_PER_REQUEST,
            ),
            report.ratio_check(
                "--cluster local:2 vs --workers 2",
                f">= {DASK_VS_WORKERS}x",
                report.ratio(rate("afetch --cluster local:2"), two),
                DASK_VS_WORKERS,
                rounds("afetch --cluster local:2", "afetch --workers 2"),
            ),
        ]
        memory = self.scaling_memory(nginx)
        self.results["scaling"] = {
            "targets": work.size,
            "concurrency": work.concurrency,
            "rounds": plan.rounds,
            "cpus": cpus,
            "clients": [
                {**summary.as_dict(), "cpu_us_per_request": cpu_per_request_us(summary)}
                for summary in summaries
            ],
            "memory": memory,
        }

    def scaling_memory(self, nginx: servers.Nginx) -> list[dict[str, object]]:
        plan = self.plan
        argv = (
            *shlex.split(self.afetch_command),
            "--workers",
            "2",
            "-c",
            str(plan.memory_concurrency),
            "-t",
            f"{plan.afetch_timeout_s:g}",
            "--json",
        )
        runs = []
        for size in (plan.memory_small, plan.memory_large):

            def targets(size: int = size) -> Iterable[bytes]:
                return clients.chunked_lines(clients.stream_urls(nginx.hosts, nginx.port, size))

            workdir = self.scratch(f"scaling-memory-{size}")
            child = run_child(
                argv,
                timeout_s=plan.memory_timeout_s(size),
                stdin=targets(),
                workdir=workdir,
                sample_tree=True,
            )
            shutil.rmtree(workdir, ignore_errors=True)
            total_mb = child.tree_peak_rss_kib / 1024
            progress(
                f"scaling memory: --workers 2, {size:>9,} targets {child.wall_s:7.1f} s "
                f" {size / child.wall_s:9,.0f} req/s  {total_mb:5.1f} MB in all"
                f"  {'ok' if child.clean_exit else 'FAIL'}"
            )
            runs.append(
                {
                    "targets": size,
                    "wall_s": round(child.wall_s, 2),
                    "total_peak_rss_mb": round(total_mb, 1),
                    "largest_process_rss_mb": round(child.peak_rss_mb, 1),
                    "clean_exit": child.clean_exit,
                }
            )
        emit(
            "Scaling memory: --workers 2, targets streamed on stdin,"
            f" {plan.memory_concurrency} in flight, JSON to /dev/null",
            report.markdown(
                ["targets", "wall s", "total peak RSS MB (all processes)", "largest process MB"],
                [
                    [
                        f"{run['targets']:,}",
                        f"{run['wall_s']}",
                        f"{run['total_peak_rss_mb']}",
                        f"{run['largest_process_rss_mb']}",
                    ]
                    for run in runs
                ],
            ),
        )
        small, large = runs
        growth = report.ratio(
            float(str(large["total_peak_rss_mb"])), float(str(small["total_peak_rss_mb"]))
        )
        self.checks += [
            Check(
                f"--workers 2 memory at {plan.memory_large:,}, all processes",
                f"<= {SCALING_MEMORY_MAX_MB:.0f} MB",
                f"{large['total_peak_rss_mb']} MB",
                bool(large["clean_exit"])
                and float(str(large["total_peak_rss_mb"])) <= SCALING_MEMORY_MAX_MB,
            ),
            Check(
                f"--workers 2 memory {plan.memory_large:,} vs {plan.memory_small:,}",
                f"<= {MEMORY_GROWTH:.2f}x",
                "—" if growth is None else f"{growth:.2f}x",
                None if growth is None else growth <= MEMORY_GROWTH,
            ),
        ]
        return runs

    def startup(self) -> None:
        rows = []
        results: dict[str, object] = {}
        for flag in ("--version", "--help"):
            argv = (*shlex.split(self.afetch_command), flag)
            walls_ms: list[float] = []
            problem = ""
            for _ in range(self.plan.startup_runs):
                workdir = self.scratch("startup")
                timeout_s = min(self.plan.child_timeout_s, STARTUP_TIMEOUT_S)
                child = run_child(argv, timeout_s=timeout_s, workdir=workdir)
                shutil.rmtree(workdir, ignore_errors=True)
                if not child.clean_exit:
                    # One failure says enough; nineteen more timeouts would only cost time.
                    problem = "killed at timeout" if child.timed_out else f"exit {child.returncode}"
                    break
                walls_ms.append(child.wall_s * 1000)
            median = statistics.median(walls_ms) if walls_ms else None
            rows.append(
                [
                    f"afetch {flag}",
                    "—" if median is None else f"{median:.0f}",
                    f"{min(walls_ms):.0f}–{max(walls_ms):.0f}" if walls_ms else "—",
                    f"FAIL: {problem}" if problem else f"{len(walls_ms)} ok",
                ]
            )
            results[flag] = {"median_ms": median, "runs_ms": walls_ms, "problem": problem}
            if flag == "--version":
                measured = "—" if median is None else f"{median:.0f} ms"
                passed = median is not None and median < STARTUP_MAX_MS and not problem
                self.checks.append(
                    Check("start-up --version", f"< {STARTUP_MAX_MS:.0f} ms", measured, passed)
                )
        emit(
            f"Start-up: {self.plan.startup_runs} runs each, wall time of the whole process",
            report.markdown(["command", "median ms", "min–max", "runs"], rows),
        )
        self.results["startup"] = results


def cpu_per_request_us(summary: Summary) -> float | None:
    """The median over good runs of CPU time per request, in microseconds."""
    values = [run.child.cpu_s / run.expected * 1e6 for run in summary.good if run.child.cpu_s]
    return statistics.median(values) if values else None


# tomnomnom/httprobe at 0745f64 (MIT, its LICENSE beside it): one Go file of the standard
# library only, so it builds with no network and no module download.
HTTPROBE_SOURCE = Path(__file__).resolve().parent / "httprobe"
HTTPROBE_BUILD_TIMEOUT_S = 300.0


def build_httprobe(tmp: Path) -> Path | None:
    """tomnomnom's httprobe: the one on PATH if there is one, else built from the copy in
    bench/httprobe with the `go` on PATH into `tmp`, once a run (a failed build is not tried
    again), Debian's golang-go installed first where there is no Go and the bench can install
    (root, apt-get); None, with a message saying why, where neither is possible."""
    found = shutil.which("httprobe")
    if found:
        return Path(found)
    home = tmp / "httprobe-build"
    binary = home / "httprobe"
    if binary.exists():
        return binary
    if home.exists():
        return None  # built and failed earlier in this run: said then
    go = shutil.which("go")
    if go is None and servers.can_install():  # as nginx and ab are: Debian's Go builds it
        try:
            servers.install(["golang-go"])
        except (OSError, subprocess.CalledProcessError) as exc:
            progress(f"httprobe: apt-get install golang-go failed ({exc})")
        go = shutil.which("go")
    if go is None:
        progress("httprobe: not on PATH and no Go to build it (apt-get install golang-go): skipped")
        return None
    scratch = home / "go-tmp"
    scratch.mkdir(parents=True)
    env = {
        **os.environ,
        # Everything the build writes goes under `home`: its cache, its module path, its work
        # directory and any telemetry; it reads no go.work, fetches nothing and leaves go.mod as
        # it is (the source needs nothing but the standard library).
        "GOCACHE": str(home / "go-cache"),
        "GOPATH": str(home / "go-path"),
        "GOTMPDIR": str(scratch),
        "XDG_CONFIG_HOME": str(home / "config"),
        "GOWORK": "off",
        "GOPROXY": "off",
        "GOFLAGS": "-mod=readonly",
        "GOTOOLCHAIN": "local",  # the go asked for, whatever toolchain the user's go env names
        "CGO_ENABLED": "0",
    }
    progress(f"httprobe: building it from {HTTPROBE_SOURCE} with {go} ...")
    build = subprocess.Popen(
        [go, "build", "-o", str(binary), "."],
        cwd=HTTPROBE_SOURCE,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its compilers and linker with it, if it must be stopped
    )
    try:
        output, _ = build.communicate(timeout=HTTPROBE_BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(build.pid, signal.SIGKILL)
        build.communicate()
        progress(f"httprobe: the build took over {HTTPROBE_BUILD_TIMEOUT_S:g} s: skipped")
        return None
    if build.returncode != 0 or not binary.exists():
        tail = output.strip().splitlines()[-3:]
        progress(f"httprobe: the build failed ({' / '.join(tail)}): skipped")
        return None
    return binary


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(title: str, table: str) -> None:
    print(f"\n### {title}\n\n{table}\n", flush=True)


def _read_first_line(path: str, prefix: str) -> str:
    try:
        with open(path) as file:
            for line in file:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _version(argv: Sequence[str]) -> str:
    """First line a tool prints about its version; a hung tool is killed with its group."""
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    except OSError:
        return "unavailable"
    try:
        stdout, stderr = proc.communicate(timeout=VERSION_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return "unavailable (timed out)"
    text = (stdout or stderr).strip().splitlines()
    return text[0] if text else "unknown"


def machine_info(afetch_command: str) -> dict[str, object]:
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin") or "nginx"
    versions = {
        "afetch": _version([*shlex.split(afetch_command), "--version"]),
        "curl": _version(["curl", "--version"]),
        "nginx": _version([nginx, "-v"]),
        "ab": _version(["ab", "-V"]),
    }
    for module in ("httpx", "uvloop"):
        try:
            versions[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            versions[module] = "not installed"
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": _read_first_line("/proc/cpuinfo", "model name"),
        "memory_total": _read_first_line("/proc/meminfo", "MemTotal"),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "versions": versions,
    }


def _terminate_on_sigterm() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so ``finally`` blocks stop the servers."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def default_afetch() -> str:
    """The afetch installed beside the Python running the bench (a venv's), else ``afetch``."""
    beside = Path(sys.executable).parent / "afetch"
    return shlex.quote(str(beside)) if os.access(beside, os.X_OK) else "afetch"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="afetch benchmark against curl --parallel, ab and plain-Python baselines."
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, 2 rounds (under a minute)"
    )
    parser.add_argument(
        "--json-out", type=Path, default=DEFAULT_JSON_OUT, help=f"default: {DEFAULT_JSON_OUT}"
    )
    parser.add_argument(
        "--afetch",
        default=default_afetch(),
        help="command to run afetch (default: the afetch next to this Python, else on PATH)",
    )
    parser.add_argument(
        "--case",
        action="append",
        choices=CASES,
        help="run only this case (repeatable); default: all",
    )
    parser.add_argument("--rounds", type=int, help="override the number of rounds")
    parser.add_argument(
        "--child-timeout",
        type=float,
        default=120.0,
        help="hard limit in seconds for one client run (default: 120)",
    )
    return parser.parse_args(argv)


def precompile() -> None:
    """Write the bytecode of the afetch package this Python imports, as `pip install` does.
    An editable checkout started under PYTHONDONTWRITEBYTECODE (as on these machines) compiles
    every module of afetch at every start, in every process: one target took 0.13 s instead of
    0.09 s, through --cluster local:2 0.54 s instead of 0.47 s (6 runs each), which no
    installed afetch pays. (Another install given as --afetch has its own, from pip.)"""
    spec = importlib.util.find_spec("fetcher")
    if spec is None or not spec.submodule_search_locations:
        return
    for location in spec.submodule_search_locations:
        compileall.compile_dir(location, quiet=1)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = (Plan.quick if args.quick else Plan.full)(args.child_timeout)
    if args.rounds is not None:
        plan = dataclasses.replace(plan, rounds=max(1, args.rounds))
    cases = args.case or list(CASES)

    try:
        servers.ensure_tools()
    except servers.ToolsMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"bench: installing tools failed: {exc}", file=sys.stderr)
        return 2
    afetch_program = shlex.split(args.afetch)[0] if args.afetch.strip() else ""
    if not afetch_program or shutil.which(afetch_program) is None:
        print(
            f"bench: afetch command not found: {args.afetch!r} "
            '(install it, or pass --afetch ".venv/bin/afetch")',
            file=sys.stderr,
        )
        return 2

    nofile = raise_nofile_limit()
    _terminate_on_sigterm()
    precompile()

    info = machine_info(args.afetch)
    print(f"# afetch benchmark{' (quick)' if args.quick else ''}\n")
    print(
        f"{info['date']} · {info['nproc']} × {info['cpu_model']} · Python {info['python']} · "
        f"Linux {info['kernel']} · RLIMIT_NOFILE {nofile}",
        flush=True,
    )
    output: dict[str, object] = {
        "machine": info,
        "plan": dataclasses.asdict(plan),
        "command": " ".join(shlex.quote(arg) for arg in sys.argv),
        "afetch_command": args.afetch,
    }
    with tempfile.TemporaryDirectory(prefix="afetch-bench-") as tmp_name:
        tmp = Path(tmp_name)
        bench = Bench(plan, args.afetch, tmp)
        nginx = servers.Nginx(tmp)
        atexit.register(nginx.stop)
        try:
            steps: dict[str, Callable[[], None]] = {
                "throughput": lambda: bench.throughput(nginx),
                "https": bench.https,
                "latency": bench.latency,
                "memory": lambda: bench.memory(nginx),
                "startup": bench.startup,
                "scaling": lambda: bench.scaling(nginx),
            }
            if {"throughput", "memory", "scaling"} & set(cases):
                nginx.start()
                progress(f"nginx on {', '.join(nginx.hosts)} port {nginx.port}")
            for case in CASES:
                if case in cases:
                    steps[case]()
        finally:
            nginx.stop()
            output["rss_floor_mb"] = round(bench.rss_floor_mb, 1)
            output.update(bench.results)
            output["checks"] = [check.as_dict() for check in bench.checks]
            if bench.checks:
                emit("Targets (issues 6, 11 and 12)", report.checks_table(bench.checks))
            args.json_out.parent.mkdir(parents=True, exist_ok=True)
            args.json_out.write_text(json.dumps(output, indent=2) + "\n")
            print(f"results written to {args.json_out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
