"""The loopback servers the benchmark runs against, and the tools it needs installed.

Both servers run as child processes in their own process group, listen only on 127.0.0.x, and are
stopped by ``stop()`` — called from ``finally`` and from ``atexit``, whichever comes first.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# Several loopback addresses so that targets are distinct hosts (distinct connection pools,
# distinct 4-tuples) rather than one host hammered 20 000 times.
DEFAULT_HOSTS: tuple[str, ...] = tuple(f"127.0.0.{i}" for i in range(1, 9))

# A free port is picked by binding :0 and closing; another process can take it before the server
# binds, so a few attempts with fresh ports.
PORT_ATTEMPTS = 5
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0

TOOLS = {"nginx": "nginx-light", "ab": "apache2-utils", "curl": "curl"}
INSTALL_COMMAND = "sudo apt-get update && sudo apt-get install -y nginx-light apache2-utils curl"


class ToolsMissing(Exception):
    """nginx, ab or curl is missing and cannot be installed from here."""


def ensure_tools() -> None:
    """Install nginx/ab/curl with apt-get when running as root; otherwise say exactly how."""
    missing = [tool for tool in TOOLS if _which(tool) is None]
    if not missing:
        return
    if not can_install():
        raise ToolsMissing(f"missing: {', '.join(missing)}; install with:\n  {INSTALL_COMMAND}")
    install([TOOLS[tool] for tool in missing])
    still = [tool for tool in TOOLS if _which(tool) is None]
    if still:
        raise ToolsMissing(f"still missing after apt-get: {', '.join(still)}")


def can_install() -> bool:
    """Whether install() can work here: root, with apt-get."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def install(packages: Sequence[str]) -> None:
    """apt-get install `packages` (after an update), saying so on stderr."""
    print(f"installing {' '.join(packages)} with apt-get ...", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *packages],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def _which(tool: str) -> str | None:
    # nginx lives in /usr/sbin, which is not on every user's PATH.
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


def free_port(hosts: Sequence[str]) -> int:
    """A port that is free on every one of ``hosts`` right now (it may not stay free)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port: int = probe.getsockname()[1]
        if all(_bindable(host, port) for host in hosts):
            return port
    raise RuntimeError("no free port found on the loopback addresses")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class _ServerProcess:
    """A server child in its own process group, stopped exactly once."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def _spawn(self, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as log_file:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.proc = proc
        atexit.register(self.stop)
        return proc

    def _wait_ready(self, hosts: Sequence[str], port: int) -> bool:
        """True once every address accepts; False if the server died (port taken?)."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        pending = list(hosts)
        while pending and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            pending = [host for host in pending if not _accepts(host, port)]
            if pending:
                time.sleep(0.05)
        return not pending

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        if proc.poll() is None:
            # SIGTERM is a fast shutdown for nginx and ends the delayed server's workers.
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        # The group may still hold workers even after the leader exited.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if proc.poll() is None:
            proc.wait()


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
worker_rlimit_nofile 65536;
events {{
    worker_connections 16384;
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    # Every client gets a new TCP connection per request, whatever it asks for.
    keepalive_timeout 0;
    server_tokens off;
    default_type text/plain;
    server {{
{listens}
{tls}
        location / {{
            return 200 "ok\\n";
        }}
{locations}
    }}
}}
"""


# With TLS: a full handshake per connection for every client. curl keeps a session cache
# across its transfers and would resume most of them (no certificate sent, no signature made);
# with neither cache nor tickets on the server, no client can.
NGINX_TLS = """\
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_session_cache off;
        ssl_session_tickets off;"""


class Nginx(_ServerProcess):
    """nginx with a generated config: one worker, no access log, a fixed 3-byte body; with
    `tls` (certificate and key files) https only; `locations`: more paths answering the same,
    each with its own extra response headers."""

    def __init__(
        self,
        tmp: Path,
        hosts: Sequence[str] = DEFAULT_HOSTS,
        tls: tuple[Path, Path] | None = None,
        locations: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    ) -> None:
        super().__init__()
        self.tmp = tmp
        self.hosts = tuple(hosts)
        self.tls = tls
        self.locations = dict(locations or {})

    def start(self) -> None:
        nginx = _which("nginx")
        if nginx is None:
            raise ToolsMissing("nginx not found")
        for _ in range(PORT_ATTEMPTS):
            port = free_port(self.hosts)
            conf = self.tmp / "nginx.conf"
            ssl = " ssl" if self.tls else ""
            listens = "\n".join(
                f"        listen {host}:{port}{ssl} backlog=4096;" for host in self.hosts
            )
            tls = NGINX_TLS.format(cert=self.tls[0], key=self.tls[1]) if self.tls else ""
            locations = "\n".join(
                _location(path, headers) for path, headers in self.locations.items()
            )
            conf.write_text(
                NGINX_CONF.format(tmp=self.tmp, listens=listens, tls=tls, locations=locations)
            )
            argv = [nginx, "-p", str(self.tmp), "-e", str(self.tmp / "error.log"), "-c", str(conf)]
            self._spawn(argv, self.tmp / "nginx.out")
            if self._wait_ready(self.hosts, port):
                self.port = port
                return
            self.stop()
        log = (self.tmp / "error.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"nginx did not start after {PORT_ATTEMPTS} ports:\n{log}")


def tls_files(tmp: Path, hosts: Sequence[str]) -> tuple[Path, Path, Path]:
    """(certificate chain, key, CA) files for nginx over `hosts`, from trustme (a dev extra):
    an EC P-256 leaf, as most sites serve now, signed by a throwaway CA."""
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert(*hosts)
    cert, key, ca_file = tmp / "tls-cert.pem", tmp / "tls-key.pem", tmp / "tls-ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    return cert, key, ca_file


def _location(path: str, headers: Sequence[tuple[str, str]]) -> str:
    """An exact-match location answering "ok" with `headers` added (always: on any status)."""
    added = "".join(f'            add_header {name} "{value}" always;\n' for name, value in headers)
    return f'        location = {path} {{\n{added}            return 200 "ok\\n";\n        }}'


class DelayedServer(_ServerProcess):
    """bench/delayed_server.py: answers every request after ``delay_s``."""

    def __init__(
        self,
        tmp: Path,
        *,
        delay_s: float,
        processes: int,
        hosts: Sequence[str] = DEFAULT_HOSTS,
    ) -> None:
        super().__init__()
        self.tmp = tmp
        self.delay_s = delay_s
        self.processes = processes
        self.hosts = tuple(hosts)

    def start(self) -> None:
        script = Path(__file__).with_name("delayed_server.py")
        for _ in range(PORT_ATTEMPTS):
            port = free_port(self.hosts)
            argv = [
                sys.executable,
                str(script),
                "--port",
                str(port),
                "--hosts",
                ",".join(self.hosts),
                "--delay",
                str(self.delay_s),
                "--processes",
                str(self.processes),
            ]
            self._spawn(argv, self.tmp / "delayed_server.log")
            if self._wait_ready(self.hosts, port):
                self.port = port
                return
            self.stop()
        log = (self.tmp / "delayed_server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"delayed server did not start:\n{log}")
