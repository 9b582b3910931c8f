"""`make demo`: afetch against a handful of local hosts, in text and then JSON Lines.

Needs nothing from the internet: the hosts are scripted servers on 127.0.0.1 (see loopback.py),
and the TLS host's certificate comes from a throwaway CA made by trustme, which the `demo` extra
installs (`pip install 'afetch[demo]'`; `make demo` does).
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

from . import extras
from .loopback import LoopbackHosts, replies, response, silent

DEMO_TIMEOUT = 2


def main() -> int:
    trustme = extras.TRUSTME.load()
    if trustme is None:
        print(f"afetch demo: error: {extras.TRUSTME.missing}", file=sys.stderr)
        return 2
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_context)

    with LoopbackHosts() as hosts, tempfile.TemporaryDirectory() as tmp:
        ok = response("200 OK", [("Content-Type", "text/html"), ("Server", "demo")])
        moved = response("301 Moved Permanently", [("Location", "https://localhost/new")])
        targets = [
            f"127.0.0.1:{hosts.serve(replies(ok))}",
            f"http://localhost:{hosts.serve(replies(moved))}/old",
            f"https://localhost:{hosts.serve(replies(ok), tls=server_context)}/",
            f"127.0.0.1:{hosts.serve(silent())}",
            f"127.0.0.1:{hosts.refused()}",
            "not a host",
        ]
        ca_file = Path(tmp) / "demo-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        command = [
            sys.executable,
            "-m",
            "fetcher",
            "-t",
            str(DEMO_TIMEOUT),
            "--cacert",
            str(ca_file),
        ]

        for title, extra in (("text", []), ("JSON Lines", ["--json"])):
            flags = " ".join(["-t", str(DEMO_TIMEOUT), "--cacert", "demo-ca.pem", *extra])
            print(f"\n$ afetch {flags} <the 6 demo hosts>")
            print(f"# {title}: a 200, a redirect, TLS, a silent host, a refused port, bad input")
            sys.stdout.flush()
            status = subprocess.run([*command, *extra, *targets], check=False).returncode
            print(f"# afetch exited {status} (1: some targets failed, as they should here)")
            if status != 1:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
