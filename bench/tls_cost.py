"""What the `tls` object costs per record, in CPU microseconds, piece by piece.

    .venv/bin/python bench/tls_cost.py [--repeat 20000]

In-process, no network: a trustme CA and leaf (EC P-256, as the https bench case serves), one
handshake over memory BIOs for a real SSL object, then each step timed on its own with
process_time (far less disturbed by a busy machine than wall time):

  observe          what a backend does after the handshake: version, cipher, ALPN, the DER;
  parse (miss)     cryptography parses every field a record shows (CertCache cold);
  cache hit        SHA-256 of the DER and the cache lookup (CDN hosts share certificates);
  tls object       the record's `tls` dict with the certificate cached (what a record costs);
  verdict (miss)   the offline check with -k (trust store loaded, VerdictCache cold);
  verdict (hit)    the same with the verdict cached.
"""

from __future__ import annotations

import argparse
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trustme

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fetcher import tls  # noqa: E402


def handshake(ca: trustme.CA, leaf: trustme.LeafCert) -> ssl.SSLObject:
    """A completed client SSLObject, the server over memory BIOs in the same process."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(server_context)
    server_context.set_alpn_protocols(["http/1.1"])
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    client_context.set_alpn_protocols(["http/1.1"])
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):  # a TLS 1.3 handshake takes two round trips
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    client.do_handshake()
    return client


def per_call_us(step: Callable[[int], object], repeat: int) -> float:
    started = time.process_time()
    for index in range(repeat):
        step(index)
    return (time.process_time() - started) / repeat * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20_000)
    repeat = parser.parse_args().repeat
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    client = handshake(ca, leaf)
    info = tls.observe(client, "localhost", True, None)
    der = info.der
    assert der is not None
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        ca_file = Path(tmp) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        verdicts = tls.VerdictCache()
        verdicts.get(der, "warm-up", str(ca_file))  # loads the trust store once
        rows = {
            "observe": per_call_us(lambda _: tls.observe(client, "localhost", True, None), repeat),
            "parse (miss)": per_call_us(lambda _: tls.parse_cert(der), max(1, repeat // 20)),
            "cache hit": per_call_us(lambda _: tls.CERT_CACHE.get(der), repeat),
            "tls object": per_call_us(
                lambda _: tls.observe(client, "localhost", True, None).as_dict(now), repeat
            ),
            "verdict (miss)": per_call_us(
                lambda i: verdicts.get(der, f"h{i}.example", str(ca_file)), max(1, repeat // 20)
            ),
            "verdict (hit)": per_call_us(
                lambda _: verdicts.get(der, "h0.example", str(ca_file)), repeat
            ),
        }
    print("| step | CPU us per record |\n|---|---:|")
    for name, micros in rows.items():
        print(f"| {name} | {micros:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
