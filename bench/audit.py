"""--audit's CPU cost per record: afetch with and without it, in the same run, on the same targets.

    .venv/bin/python bench/audit.py [--records 20000] [--rounds 5] [--afetch CMD]

Starts the bench's nginx (servers.py) with two paths: /bare (nginx's own five headers) and
/mozilla (mozilla.org's security headers as MDN's scanner fixture has them: a 1.3 kB CSP, HSTS,
COOP, Referrer-Policy, X-Frame-Options, X-Content-Type-Options, and two cookies). Per round and
path it runs `afetch --json` on N http URLs without, with -L (which --audit implies), and with
--audit, one after the other (so a change in the machine's load hits all three alike), and
takes each child's CPU time, user plus system, from getrusage of the waited child. The targets
are http URLs: for them --audit makes no extra request (their own fetch is the redirection
route), so the difference is the grading, the Origin header and the larger record (beyond what
-L costs). Prints the medians and the differences per record; exit 1 if a run failed or a
graded record is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from servers import DEFAULT_HOSTS, Nginx, ensure_tools

# mozilla.org's security headers, 2026-01-12 (mdn/mdn-http-observatory test/fixtures), plus
# two cookies so the cookie test parses something: MDN grades this B+ over https.
MOZILLA = [
    (
        "Content-Security-Policy",
        "frame-src 'self' accounts.firefox.com js.stripe.com www.google-analytics.com "
        "www.googletagmanager.com www.youtube.com; script-src 'self' 'unsafe-eval' "
        "'unsafe-inline' cdn.transcend.io js.stripe.com s.ytimg.com tagmanager.google.com "
        "transcend-cdn.com www.google-analytics.com www.googletagmanager.com www.mozilla.org "
        "www.youtube.com; form-action 'self' "
        "https://abdri3ttkb.execute-api.us-east-2.amazonaws.com https://accounts.firefox.com/ "
        "https://basket.mozilla.org; font-src 'self' www.mozilla.org; style-src 'self' "
        "'unsafe-inline' cdn.transcend.io transcend-cdn.com www.mozilla.org; default-src "
        "'self' *.mozilla.org; frame-ancestors 'none'; connect-src 'self' cdn.transcend.io "
        "https://abdri3ttkb.execute-api.us-east-2.amazonaws.com https://accounts.firefox.com/ "
        "https://basket.mozilla.org o1069899.ingest.sentry.io o1069899.sentry.io "
        "region1.google-analytics.com telemetry.transcend.io telemetry.us.transcend.io "
        "transcend-cdn.com www.google-analytics.com www.googletagmanager.com "
        "www.mozilla.org/submit/bedrock/; upgrade-insecure-requests; img-src 'self' "
        "blog.mozilla.org data: images.ctfassets.net www.google-analytics.com "
        "www.googletagmanager.com www.mozilla.org; object-src 'none'; media-src 'self' "
        "assets.mozilla.net videos.cdn.mozilla.net www.mozilla.org; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Strict-Transport-Security", "max-age=31536000"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("X-Frame-Options", "DENY"),
    ("Set-Cookie", "sessionid=abc; Path=/; Secure; HttpOnly; SameSite=Lax"),
    ("Set-Cookie", "theme=dark; Path=/; Max-Age=31536000"),
]
PATHS = {"/bare": [], "/mozilla": MOZILLA}
CHILD_TIMEOUT_S = 300.0
# Run alternately in each round. --audit implies -L, which takes the policy's longer path (the
# redirect loop around each request) even with nothing to follow: -L alone tells it apart.
VARIANTS = {"without": [], "-L": ["-L"], "--audit": ["--audit"]}


def cpu_seconds(argv: list[str], stdout: int | Path = subprocess.DEVNULL) -> float:
    """Run argv to its end; its CPU time (user + system, with its own children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(stdout, "wb") if isinstance(stdout, Path) else open(os.devnull, "wb") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, timeout=CHILD_TIMEOUT_S)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"bench: {shlex.join(argv)} exited {done.returncode}: {done.stderr[-500:]!r}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def default_afetch() -> str:
    beside = Path(sys.executable).with_name("afetch")
    return shlex.quote(str(beside)) if os.access(beside, os.X_OK) else "afetch"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000, help="targets per run")
    parser.add_argument("--rounds", type=int, default=5, help="runs per variant and path")
    parser.add_argument("--afetch", default=default_afetch(), help="how to run afetch")
    args = parser.parse_args()
    ensure_tools()
    afetch = shlex.split(args.afetch)
    with tempfile.TemporaryDirectory(prefix="afetch-bench-audit-") as tmp_name:
        tmp = Path(tmp_name)
        nginx = Nginx(tmp, locations=PATHS)
        nginx.start()
        try:
            return measure(afetch, nginx.port, tmp, args.records, args.rounds)
        finally:
            nginx.stop()


def measure(afetch: list[str], port: int, tmp: Path, records: int, rounds: int) -> int:
    print(f"afetch --json -q -l FILE [--audit]: {records} http URLs per run, {rounds} rounds")
    for path in PATHS:
        listing = tmp / f"targets{path.replace('/', '-')}.txt"
        hosts = DEFAULT_HOSTS
        listing.write_text(
            "".join(f"http://{hosts[n % len(hosts)]}:{port}{path}\n" for n in range(records))
        )
        command = [*afetch, "--json", "-q", "-l", str(listing)]
        check = tmp / "check.jsonl"
        cpu_seconds([*command, "--audit"], check)
        graded = [json.loads(line)["audit"] for line in check.read_text().splitlines()]
        if len(graded) != records or any(audit is None for audit in graded):
            print(f"bench: {path}: {len(graded)} records, not all graded", file=sys.stderr)
            return 1
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for _ in range(rounds):
            for name, flags in VARIANTS.items():
                times[name].append(cpu_seconds(command + flags))
        median = {name: statistics.median(runs) for name, runs in times.items()}
        base, follow, audited = median["without"], median["-L"], median["--audit"]
        print(
            f"{path:9} grade {graded[0]['grade']:2}  CPU per run (median): without {base:.2f} s,"
            f" -L {follow:.2f} s, --audit {audited:.2f} s"
        )
        print(
            f"{'':9} per record: without {base / records * 1e6:.0f} us; --audit"
            f" +{(audited - base) / records * 1e6:.0f} us (+{(audited / base - 1) * 100:.0f}%),"
            f" of which the grading, Origin and record beyond -L"
            f" +{(audited - follow) / records * 1e6:.0f} us"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
